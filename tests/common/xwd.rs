//! Screenshots of a private X server: `xwd` takes one, this reads its pixels (xwd's format: a
//! big-endian header, a color map, then rows of whole-byte pixels in either byte order) and
//! writes PNG files people can look at. Needs `xwd` (apt-get install x11-apps).

use std::path::Path;
use std::process::Command;

/// A screenshot: its size and RGB pixels, row by row.
pub struct Shot {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// Reads an XWD image: 16-, 24- or 32-bit pixels at any depth, either byte order.
pub fn decode(data: &[u8]) -> Shot {
    let field = |i: usize| u32::from_be_bytes(data[i * 4..i * 4 + 4].try_into().expect("4 bytes")) as usize;
    let (header_size, depth, width, height) = (field(0), field(3), field(4), field(5));
    let (byte_order, bits_per_pixel, bytes_per_line, ncolors) = (field(7), field(11), field(12), field(19));
    // Xvfb 21 stores a 24-bit screen as 32 bits per pixel; other X servers pack it into 24.
    assert!(
        matches!(bits_per_pixel, 16 | 24 | 32) && (1..=bits_per_pixel).contains(&depth),
        "an XWD image of whole bytes per pixel, not {bits_per_pixel} bits at depth {depth}"
    );
    let bytes_per_pixel = bits_per_pixel / 8;
    let pixels = header_size + ncolors * 12;
    assert!(
        data.len() >= pixels + height * bytes_per_line && bytes_per_line >= width * bytes_per_pixel,
        "the XWD file is complete"
    );
    let depth_mask = u32::MAX >> (32 - depth);
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let at = pixels + y * bytes_per_line + x * bytes_per_pixel;
            let bytes = &data[at..at + bytes_per_pixel];
            // byte_order 0 is LSBFirst: the first byte is the least significant.
            let v = if byte_order == 0 {
                bytes.iter().rev().fold(0u32, |v, &b| v << 8 | u32::from(b))
            } else {
                bytes.iter().fold(0u32, |v, &b| v << 8 | u32::from(b))
            } & depth_mask;
            rgb.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
        }
    }
    Shot { width, height, rgb }
}

/// Takes a screenshot of `display`.
pub fn take(display: &str) -> Shot {
    let out = Command::new("xwd")
        .args(["-root", "-silent", "-display", display])
        .output()
        .expect("xwd runs (apt-get install x11-apps)");
    assert!(
        out.status.success(),
        "xwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    decode(&out.stdout)
}

impl Shot {
    /// Writes the screenshot as a PNG file.
    #[allow(dead_code)] // not every test binary that includes this file saves PNGs
    pub fn save_png(&self, path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot folder");
        }
        let file = std::fs::File::create(path).expect("the PNG file");
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            self.width as u32,
            self.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("a PNG header");
        writer.write_image_data(&self.rgb).expect("the PNG pixels");
    }

    /// The pixel at (x, y) as one number 0xRRGGBB.
    pub fn pixel(&self, x: usize, y: usize) -> u32 {
        let i = (y * self.width + x) * 3;
        u32::from(self.rgb[i]) << 16 | u32::from(self.rgb[i + 1]) << 8 | u32::from(self.rgb[i + 2])
    }
}

#[test]
fn xwd_decode_reads_24_and_32_bit_pixels() {
    let image = |bpp: usize, order: u32, pixel: &[u8]| {
        let mut header = [0u32; 25];
        header[0] = 100; // header size, no window name
        header[3] = 24; // depth
        header[4] = 1; // width
        header[5] = 1; // height
        header[7] = order;
        header[11] = bpp as u32;
        header[12] = (bpp / 8) as u32; // bytes per line
        let mut data: Vec<u8> = header.iter().flat_map(|v| v.to_be_bytes()).collect();
        data.extend_from_slice(pixel);
        data
    };
    assert_eq!(
        decode(&image(32, 0, &[0x33, 0x22, 0x11, 0xff])).pixel(0, 0),
        0x11_2233
    );
    assert_eq!(
        decode(&image(32, 1, &[0xff, 0x11, 0x22, 0x33])).pixel(0, 0),
        0x11_2233
    );
    assert_eq!(decode(&image(24, 0, &[0x33, 0x22, 0x11])).pixel(0, 0), 0x11_2233);
    assert_eq!(decode(&image(24, 1, &[0x11, 0x22, 0x33])).pixel(0, 0), 0x11_2233);
}
