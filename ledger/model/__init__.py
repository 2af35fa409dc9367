"""The model: entities, their schemas and trees, personal fields, upcasting.

Pure data and rules about data; nothing here reads or writes the log. Everything above
(the codec, the store, the projections, the write side) speaks in these types.
"""
