// @ts-check
// Draws the first pages of a PDF in a worker of its own, with the preview
// module (`preview/amicus_preview.js`, a PDF rasterizer in Rust). The PDF
// arrives decrypted, in memory, from the page; the pixels go back to it the
// same way, and nothing is written anywhere. A PDF that crashes or hangs the
// rasterizer takes only this worker down: the page ends it and starts
// another for the next preview.

import init, { PdfPreview } from "./preview/amicus_preview.js";

const ready = init({ module_or_path: new URL("./preview/amicus_preview_bg.wasm", import.meta.url) });

/** @param {MessageEvent<{ id: number, bytes: ArrayBuffer, pages: number, width: number }>} event */
self.onmessage = async (event) => {
  const { id, bytes, pages, width } = event.data;
  try {
    await ready;
    const pdf = new PdfPreview(new Uint8Array(bytes));
    const total = pdf.pages();
    const drawn = [];
    for (let i = 0; i < Math.min(pages, total); i++) {
      const page = pdf.draw(i, width);
      drawn.push({ width: page.width, height: page.height, rgba: page.rgba });
      page.free();
    }
    pdf.free();
    self.postMessage({ id, total, pages: drawn }, { transfer: drawn.map((p) => p.rgba.buffer) });
  } catch (err) {
    self.postMessage({ id, error: String(err instanceof Error ? err.message : err) });
  }
};
