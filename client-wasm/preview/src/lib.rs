//! The PDF preview of the browser: the first pages of a PDF drawn to RGBA
//! pixels by `hayro`, in memory. The app runs it in a worker of its own
//! (`preview-worker.js`) with a time limit, so a hostile or broken PDF can
//! at worst fail its own preview.

use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::Pdf;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{PixmapSettings, RenderCache, RenderSettings};
use wasm_bindgen::prelude::*;

/// At most this many pixels in one drawn page (about 16 MiB of RGBA), what
/// ever size the page claims.
pub const MAX_PIXELS: f32 = 4_000_000.0;

/// The widest a page is drawn, in pixels.
pub const MAX_WIDTH: u32 = 2_400;

/// A PDF opened for preview.
#[wasm_bindgen]
pub struct PdfPreview {
    pdf: Pdf,
}

/// One drawn page: `width × height` pixels, RGBA, 4 bytes each.
#[wasm_bindgen(getter_with_clone)]
pub struct DrawnPage {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// The pixels, row after row, red, green, blue, alpha.
    pub rgba: Vec<u8>,
}

#[wasm_bindgen]
impl PdfPreview {
    /// Opens `bytes` as a PDF; an error says it is not one the preview
    /// can read (encrypted, broken).
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: Vec<u8>) -> Result<PdfPreview, JsError> {
        PdfPreview::open(bytes).map_err(|e| JsError::new(&e))
    }

    /// How many pages the PDF has.
    pub fn pages(&self) -> usize {
        self.pdf.pages().len()
    }

    /// Page `index` (from 0) drawn `width` pixels wide on white (smaller if
    /// the page would exceed `MAX_PIXELS`).
    pub fn draw(&self, index: usize, width: u32) -> Result<DrawnPage, JsError> {
        self.draw_page(index, width).map_err(|e| JsError::new(&e))
    }
}

impl PdfPreview {
    /// Opens `bytes` as a PDF.
    pub fn open(bytes: Vec<u8>) -> Result<PdfPreview, String> {
        let pdf = Pdf::new(bytes).map_err(|e| format!("not a readable PDF ({e:?})"))?;
        Ok(PdfPreview { pdf })
    }

    /// Page `index` drawn at most `width` pixels wide.
    pub fn draw_page(&self, index: usize, width: u32) -> Result<DrawnPage, String> {
        let pages = self.pdf.pages();
        let page = pages
            .get(index)
            .ok_or_else(|| format!("no page {} in a PDF of {}", index + 1, pages.len()))?;
        let (page_width, page_height) = page.render_dimensions();
        if !(page_width >= 1.0 && page_height >= 1.0) {
            return Err("a page without a size".into());
        }
        let scale = page_scale(page_width, page_height, width);
        let pixmap = hayro::render(
            page,
            &RenderCache::new(),
            &InterpreterSettings::default(),
            &RenderSettings::default(),
            &PixmapSettings {
                x_scale: scale,
                y_scale: scale,
                bg_color: WHITE,
            },
        );
        let (width, height) = (u32::from(pixmap.width()), u32::from(pixmap.height()));
        // Drawn on opaque white: premultiplied and straight alpha agree.
        let rgba = pixmap.data_as_u8_slice().to_vec();
        Ok(DrawnPage {
            width,
            height,
            rgba,
        })
    }
}

/// The scale that draws a `page_width × page_height` page (in PDF points)
/// `width` pixels wide, lowered to stay within `MAX_WIDTH` and `MAX_PIXELS`.
fn page_scale(page_width: f32, page_height: f32, width: u32) -> f32 {
    let wanted = width.clamp(1, MAX_WIDTH) as f32 / page_width;
    let fits = (MAX_PIXELS / (page_width * page_height)).sqrt();
    wanted.min(fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_pdf() -> Vec<u8> {
        amicus_fixtures::pdf(&["Hello"])
    }

    #[test]
    fn a_page_is_drawn_at_the_width_asked_with_its_text_in_ink() {
        let preview = PdfPreview::open(hello_pdf()).unwrap();
        assert_eq!(preview.pages(), 1);
        let page = preview.draw_page(0, 600).unwrap();
        assert_eq!(page.width, 600);
        assert_eq!(page.height, (842.0_f32 * 600.0 / 595.0) as u32);
        assert_eq!(page.rgba.len(), (page.width * page.height * 4) as usize);
        let dark = page
            .rgba
            .chunks(4)
            .filter(|p| p[0] < 128 && p[1] < 128 && p[2] < 128)
            .count();
        // "Hello" at 48 pt, about 1/10 of the page's width: hundreds of
        // dark pixels, and far from all of them.
        assert!(dark > 500, "{dark} dark pixels");
        assert!(
            dark < (page.width * page.height / 20) as usize,
            "{dark} dark pixels"
        );
        // The text sits in the page's top part (y = 720 of 842 from the bottom).
        let first_dark_row =
            page.rgba.chunks(4).position(|p| p[0] < 128).unwrap() as u32 / page.width;
        assert!(
            first_dark_row < page.height / 4,
            "first ink at row {first_dark_row}"
        );
    }

    #[test]
    fn a_page_claiming_a_huge_size_is_drawn_within_the_pixel_budget() {
        let huge = String::from_utf8(hello_pdf())
            .unwrap()
            .replace("[0 0 595 842]", "[0 0 14400 14400]");
        // The cross-reference offsets moved; readers rebuild them.
        let preview = PdfPreview::open(huge.into_bytes()).unwrap();
        let page = preview.draw_page(0, 100_000).unwrap();
        assert!(page.width <= MAX_WIDTH);
        assert!((page.width * page.height) as f32 <= MAX_PIXELS * 1.01);
    }

    #[test]
    fn what_is_not_a_pdf_or_a_page_is_an_error() {
        assert!(PdfPreview::open(b"GIF89a not a pdf".to_vec()).is_err());
        assert!(PdfPreview::open(Vec::new()).is_err());
        let preview = PdfPreview::open(hello_pdf()).unwrap();
        let missing = preview.draw_page(3, 600).err().unwrap();
        assert!(missing.contains("no page 4"), "{missing}");
    }
}
