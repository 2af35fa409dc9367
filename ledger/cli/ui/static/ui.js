// entity-ledger web page: its only script. The position slider on a lineage page redraws the
// graph as of that log position: moving it fills the number box, releasing it submits the
// GET form (the server draws the graph). Without JavaScript the box and its button still work.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[data-slider]").forEach(function (slider) {
    var box = slider.form.querySelector("input[name=position]");
    slider.addEventListener("input", function () { box.value = slider.value; });
    slider.addEventListener("change", function () { box.value = slider.value; slider.form.submit(); });
  });
});
