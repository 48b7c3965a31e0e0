//! The kernelspec Jupyter launches Spindle by: `kernel.json` (how to start
//! it, its language, message-based interrupts) and its logos, written
//! into a Jupyter data folder where `jupyter kernelspec list` finds it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::JupyterError;

/// The kernelspec's folder name.
pub const KERNEL_NAME: &str = "spindle";

/// Where to install a kernelspec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelspecPlace {
    /// The user's Jupyter data folder (`$JUPYTER_DATA_DIR`, else
    /// `$XDG_DATA_HOME/jupyter` or `~/.local/share/jupyter`).
    User,
    /// The active Python environment (`$VIRTUAL_ENV` or `$CONDA_PREFIX`)
    /// under `share/jupyter`.
    SysPrefix,
    /// `DIR/share/jupyter`.
    Prefix(PathBuf),
}

impl KernelspecPlace {
    /// The `kernels` folder of this place.
    pub fn kernels_dir(&self) -> Result<PathBuf, JupyterError> {
        let data_dir = match self {
            KernelspecPlace::User => match std::env::var_os("JUPYTER_DATA_DIR") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir),
                _ => match std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
                    Some(dir) => PathBuf::from(dir).join("jupyter"),
                    None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| {
                        JupyterError::NoDataDir("HOME is not set; use --prefix DIR".to_owned())
                    })?)
                    .join(".local/share/jupyter"),
                },
            },
            KernelspecPlace::SysPrefix => {
                let prefix = std::env::var_os("VIRTUAL_ENV")
                    .or_else(|| std::env::var_os("CONDA_PREFIX"))
                    .filter(|dir| !dir.is_empty())
                    .ok_or_else(|| {
                        JupyterError::NoDataDir(
                            "no active Python environment (VIRTUAL_ENV or CONDA_PREFIX); activate the one Jupyter runs from, or use --prefix DIR"
                                .to_owned(),
                        )
                    })?;
                PathBuf::from(prefix).join("share/jupyter")
            }
            KernelspecPlace::Prefix(dir) => dir.join("share/jupyter"),
        };
        Ok(data_dir.join("kernels"))
    }
}

/// The `kernel.json` that starts `program` (the spindle binary).
pub fn kernelspec_json(program: &Path) -> Value {
    json!({
        "argv": [
            program.display().to_string(),
            "kernel",
            "start",
            "--connection-file",
            "{connection_file}"
        ],
        "display_name": "Spindle (Lua)",
        "language": "lua",
        "interrupt_mode": "message",
        "env": {},
        "metadata": {
            "debugger": false,
            "spindle": { "file_extension": ".lua", "codemirror_mode": "lua" }
        }
    })
}

/// Writes the kernelspec for `program` into `place`; returns its folder.
pub fn install_kernelspec(
    program: &Path,
    place: &KernelspecPlace,
) -> Result<PathBuf, JupyterError> {
    let dir = place.kernels_dir()?.join(KERNEL_NAME);
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).map_err(|error| JupyterError::Write {
            path,
            reason: error.to_string(),
        })
    };
    std::fs::create_dir_all(&dir).map_err(|error| JupyterError::Write {
        path: dir.clone(),
        reason: error.to_string(),
    })?;
    let spec = serde_json::to_vec_pretty(&kernelspec_json(program)).expect("json");
    write(dir.join("kernel.json"), &spec)?;
    write(dir.join("logo-32x32.png"), &logo_png(32))?;
    write(dir.join("logo-64x64.png"), &logo_png(64))?;
    write(dir.join("logo-svg.svg"), LOGO_SVG.as_bytes())?;
    Ok(dir)
}

const LOGO_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="30" fill="#1f4e8c"/><ellipse cx="32" cy="32" rx="9" ry="26" fill="#f4b942"/><line x1="32" y1="2" x2="32" y2="62" stroke="#ffffff" stroke-width="3"/></svg>"##;

/// The logo as a PNG of `size`×`size`: a blue disc with a gold spindle.
fn logo_png(size: u32) -> Vec<u8> {
    let centre = size as f32 / 2.0;
    let mut raw = Vec::with_capacity((size * (size * 4 + 1)) as usize);
    for y in 0..size {
        raw.push(0); // filter: none
        for x in 0..size {
            let (dx, dy) = (x as f32 + 0.5 - centre, y as f32 + 0.5 - centre);
            let disc = dx * dx + dy * dy <= (centre * 0.94).powi(2);
            let spindle = (dx / (centre * 0.28)).powi(2) + (dy / (centre * 0.82)).powi(2) <= 1.0;
            let pixel: [u8; 4] = if dx.abs() < size as f32 / 40.0 + 0.5 && disc {
                [255, 255, 255, 255]
            } else if spindle {
                [244, 185, 66, 255]
            } else if disc {
                [31, 78, 140, 255]
            } else {
                [0, 0, 0, 0]
            };
            raw.extend_from_slice(&pixel);
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&size.to_be_bytes());
    header.extend_from_slice(&size.to_be_bytes());
    header.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (idx, block) in blocks.iter().enumerate() {
        out.push(u8::from(idx + 1 == blocks.len()));
        let length = block.len() as u16;
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
