// The few DOM helpers every view uses: building elements, and the periodic refresh a view stops on unmount.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An HTML element with properties set and children appended (null, undefined and false ones left out). */
export function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** An SVG element with attributes set (null and undefined ones left out) and children appended. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && value !== null) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

/**
 * Reload every `everyMs` unless `busy()` (the keyboard is inside the view: a refresh would move it), and redraw
 * after the window is resized. Returns the view's unmount.
 */
export function refreshing({ everyMs, busy, reload, redraw, onUnmount = () => {} }) {
  const timer = setInterval(() => { if (!busy()) reload(); }, everyMs);
  let resize = null;
  const onResize = () => { clearTimeout(resize); resize = setTimeout(redraw, 200); };
  window.addEventListener("resize", onResize);
  return () => {
    onUnmount();
    clearInterval(timer);
    clearTimeout(resize);
    window.removeEventListener("resize", onResize);
  };
}
