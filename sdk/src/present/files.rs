//! The local files a deck shows (pictures, videos, backgrounds) and the URLs they are served
//! at: the path relative to the deck's directory, so that a Markdown image written in a
//! paragraph (`![x](pic.png)`) resolves the same way. Only files inside that directory are
//! served; a file a deck names outside it gets a URL under `_files/`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::deck::{Asset, Deck, Element};

/// The deck directory and the files named outside it.
#[derive(Debug, Clone, Default)]
pub struct Files {
    dir: PathBuf,
    outside: BTreeMap<String, PathBuf>,
}

impl Files {
    /// The files of `deck`, which lives at `file`.
    pub fn of(deck: &Deck, file: &Path) -> Self {
        let mut files = Self {
            dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            outside: BTreeMap::new(),
        };
        for path in local_assets(deck) {
            if files.relative(&path).is_none() {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let url = format!("_files/{}/{}", files.outside.len(), url_encode(&name));
                files.outside.insert(url, path);
            }
        }
        files
    }

    /// The URL `path` (a file the deck names) is served at, relative to the deck's page.
    pub fn url(&self, path: &Path) -> String {
        if let Some(rel) = self.relative(path) {
            return rel
                .components()
                .map(|c| url_encode(&c.as_os_str().to_string_lossy()))
                .collect::<Vec<_>>()
                .join("/");
        }
        self.outside
            .iter()
            .find(|(_, p)| p.as_path() == path)
            .map(|(url, _)| url.clone())
            .unwrap_or_default()
    }

    /// The file served at `url` (decoded, without the leading `/`), if the deck may show it:
    /// a regular file inside the deck's directory, or one the deck names outside it.
    pub fn resolve(&self, url: &str) -> Option<PathBuf> {
        if let Some(path) = self.outside.get(url) {
            return Some(path.clone());
        }
        let rel = Path::new(url);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        let path = self.dir.join(rel);
        let canonical = path.canonicalize().ok()?;
        let dir = self.dir.canonicalize().ok()?;
        (canonical.starts_with(dir) && canonical.is_file()).then_some(canonical)
    }

    /// Every local file the deck shows, with the URL it is served at.
    pub fn all(&self, deck: &Deck) -> Vec<(String, PathBuf)> {
        local_assets(deck)
            .into_iter()
            .map(|path| (self.url(&path), path))
            .collect()
    }

    fn relative(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(&self.dir).ok()?;
        rel.components()
            .all(|c| matches!(c, Component::Normal(_)))
            .then(|| rel.to_path_buf())
    }
}

/// The local files `deck` shows, in order, once each.
fn local_assets(deck: &Deck) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for slide in &deck.slides {
        let body = slide.body.iter().filter_map(|element| match element {
            Element::Image(image) => Some(&image.src),
            Element::Video(video) => Some(&video.src),
            _ => None,
        });
        for asset in slide.background.iter().chain(body) {
            if let Asset::File(path) = asset {
                if !paths.contains(path) {
                    paths.push(path.clone());
                }
            }
        }
    }
    paths
}

/// `text` percent-encoded for a URL path segment.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A URL path percent-decoded; `None` when it is not valid UTF-8 after decoding.
pub fn url_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
