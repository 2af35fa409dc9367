"""The write side: batches, tree commands, erasure, the function table and the execution pipeline.

Write code reads state only through the inline projection (``projections.inline``) and appends
through the store; it never imports the facade (``ledger.ledger``) it is driven by.
"""
