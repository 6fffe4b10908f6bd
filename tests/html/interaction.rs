//! The timeline as a person uses it: hover, click, wheel, drag and reset, driven by events
//! a script of the test dispatches in the page (the page itself is unchanged).

use omni_metrics::report::html::render;

use super::support::{attr, browser, rendered_dom, temp_dir};
use super::synthetic;

/// Dispatched after the page rendered; writes `data-selftest` = `ok` or what failed.
const DRIVER: &str = r#"
<script>
window.addEventListener('load', function () {
  var failed = [];
  function check(ok, what) { if (!ok) failed.push(what); }
  var body = document.body;
  var c = document.getElementById('timeline');
  var rect = c.getBoundingClientRect();
  var data = JSON.parse(document.getElementById('omni-data').textContent);
  function nums(name) { return c.getAttribute(name).split(',').map(Number); }
  var g = nums('data-geometry');
  var gutter = g[0], rowsTop = g[1], rh = g[2], pw = g[3];
  function xOf(t) { var v = nums('data-view'); return gutter + (t - v[0]) / (v[1] - v[0]) * pw; }
  function yOf(row) { var v = nums('data-view'); return rowsTop + (row - v[2] + 0.3) * g[2]; }
  function pointer(type, x, y) {
    c.dispatchEvent(new PointerEvent(type, { clientX: rect.left + x, clientY: rect.top + y,
      pointerId: 1, isPrimary: true, button: 0, bubbles: true }));
  }
  function mid(stage) { return (stage[2] + stage[3]) / 2; }
  var tip = document.getElementById('tooltip');

  // Hover: the middle of the first request's first stage.
  var first = data.requests[0];
  pointer('pointermove', xOf(mid(first[14][0])), yOf(0));
  check(!tip.hidden, 'hovering a stage shows no tooltip');
  check(tip.textContent.indexOf('request ' + first[0]) === 0, 'the tooltip names the request: ' + tip.textContent);
  check(tip.textContent.indexOf('stage 0 thinker') > 0, 'the tooltip names the stage: ' + tip.textContent);
  body.setAttribute('data-tooltip', tip.textContent);

  // Click the fourth row: its tables.
  var fourth = data.requests[3];
  pointer('pointerdown', xOf(mid(fourth[14][1])), yOf(3));
  pointer('pointerup', xOf(mid(fourth[14][1])), yOf(3));
  check(body.getAttribute('data-selected') === fourth[0], 'a click selects its row: ' + body.getAttribute('data-selected'));
  var title = document.querySelector('#requests h3');
  check(title && title.textContent.indexOf('request ' + fourth[0] + ',') > 0, 'the row\'s tables are shown');

  var full = nums('data-view');
  // Wheel up in the middle: the time axis zooms in around the cursor.
  var centre = (full[0] + full[1]) / 2;
  c.dispatchEvent(new WheelEvent('wheel', { clientX: rect.left + xOf(centre), clientY: rect.top + rowsTop + 5,
    deltaY: -600, bubbles: true, cancelable: true }));
  var zoomed = nums('data-view');
  check(zoomed[1] - zoomed[0] < (full[1] - full[0]) / 2, 'the wheel zooms in: ' + zoomed);
  check(Math.abs((zoomed[0] + zoomed[1]) / 2 - centre) < (full[1] - full[0]) * 0.01, 'around the cursor: ' + zoomed);
  // Shift+wheel: the rows zoom.
  c.dispatchEvent(new WheelEvent('wheel', { clientX: rect.left + gutter + 10, clientY: rect.top + rowsTop + 5,
    deltaY: -600, shiftKey: true, bubbles: true, cancelable: true }));
  var rows = nums('data-view');
  check(rows[3] < full[3], 'shift+wheel zooms the rows: ' + rows);
  // Drag right by 100 px: earlier times come into view.
  pointer('pointerdown', gutter + 200, rowsTop + 40);
  pointer('pointermove', gutter + 300, rowsTop + 40);
  pointer('pointerup', gutter + 300, rowsTop + 40);
  var panned = nums('data-view');
  var shift = (zoomed[0] - panned[0]) / (zoomed[1] - zoomed[0]) * pw;
  check(Math.abs(shift - 100) < 1, 'a drag of 100 px pans 100 px: ' + shift);
  check(body.getAttribute('data-selected') === fourth[0], 'a drag is not a click');
  document.getElementById('reset').click();
  var reset = nums('data-view');
  check(reset.join() === full.join(), 'reset shows everything again: ' + reset);
  body.setAttribute('data-selftest', failed.length === 0 ? 'ok' : failed.join(' | '));
});
</script>
"#;

#[test]
fn issue11_hover_click_zoom_pan_and_reset_work() {
    let Some(browser) = browser("issue11_hover_click_zoom_pan_and_reset_work") else {
        return;
    };
    let (summary, requests) = synthetic::run(30, 11);
    let html = render(&summary, &requests).replacen("</body>", &format!("{DRIVER}</body>"), 1);
    let dir = temp_dir("interaction");
    let path = dir.join("report.html");
    std::fs::write(&path, html).expect("write the page");
    let dom = rendered_dom(&browser, &path, "");
    assert_eq!(attr(&dom, "data-selftest"), "ok");
    let tooltip = attr(&dom, "data-tooltip");
    assert!(tooltip.contains("stage_gen_time_ms"), "{tooltip}");
}
