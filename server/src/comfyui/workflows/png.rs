//! The workflow inside an image ComfyUI saved: its `SaveImage` writes the API-format
//! graph into a PNG text chunk named `prompt` (and the editor's graph into one named
//! `workflow`). Only uncompressed `tEXt` and `iTXt` chunks are read, walking the chunks
//! by their lengths with every length checked against what is left; nothing is
//! decoded but the text.

/// PNG's first eight bytes.
const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// What an image holds: the API-format graph's text, the editor's, both or neither.
#[derive(Debug, Default, PartialEq)]
pub struct Embedded {
    pub prompt: Option<String>,
    pub workflow: Option<String>,
}

pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(SIGNATURE)
}

/// The texts named `prompt` and `workflow` in a PNG, or why it cannot be read.
pub fn embedded(bytes: &[u8]) -> Result<Embedded, String> {
    if !is_png(bytes) {
        return Err("This file is not a PNG image.".into());
    }
    let mut at = SIGNATURE.len();
    let mut found = Embedded::default();
    while at + 12 <= bytes.len() {
        let length =
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let kind = &bytes[at + 4..at + 8];
        let start = at + 8;
        let Some(end) = start.checked_add(length).filter(|e| e + 4 <= bytes.len()) else {
            return Err("The PNG is cut short (a chunk runs past the end of the file).".into());
        };
        let data = &bytes[start..end];
        match kind {
            b"tEXt" => {
                if let Some(zero) = data.iter().position(|b| *b == 0) {
                    // Latin-1 by the PNG standard; ComfyUI's JSON is ASCII-escaped.
                    let text: String = data[zero + 1..].iter().map(|b| *b as char).collect();
                    keep(&mut found, &data[..zero], text);
                }
            }
            b"iTXt" => {
                // keyword \0 compression-flag compression-method language \0 translated \0 text
                if let Some(zero) = data.iter().position(|b| *b == 0) {
                    let rest = &data[zero + 1..];
                    if rest.len() >= 2 && rest[0] == 0 {
                        let rest = &rest[2..];
                        let mut parts = rest.splitn(3, |b| *b == 0);
                        let (_, _, text) = (parts.next(), parts.next(), parts.next());
                        if let Some(text) = text {
                            keep(
                                &mut found,
                                &data[..zero],
                                String::from_utf8_lossy(text).into_owned(),
                            );
                        }
                    }
                }
            }
            b"IEND" => break,
            _ => {}
        }
        at = end + 4;
    }
    Ok(found)
}

fn keep(found: &mut Embedded, keyword: &[u8], text: String) {
    match keyword {
        b"prompt" => found.prompt = Some(text),
        b"workflow" => found.workflow = Some(text),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0, 0, 0, 0]); // the CRC is not checked
        out
    }

    #[test]
    fn the_prompt_and_workflow_texts_are_found() {
        let mut png = SIGNATURE.to_vec();
        png.extend(chunk(b"IHDR", &[0; 13]));
        png.extend(chunk(b"tEXt", b"prompt\0{\"3\": {}}"));
        png.extend(chunk(b"iTXt", b"workflow\0\0\0en\0\0{\"nodes\": []}"));
        png.extend(chunk(b"IEND", b""));
        let found = embedded(&png).unwrap();
        assert_eq!(found.prompt.as_deref(), Some("{\"3\": {}}"));
        assert_eq!(found.workflow.as_deref(), Some("{\"nodes\": []}"));
    }

    #[test]
    fn a_lying_length_is_refused_not_followed() {
        let mut png = SIGNATURE.to_vec();
        png.extend_from_slice(&u32::MAX.to_be_bytes());
        png.extend_from_slice(b"tEXtprompt\0");
        assert!(embedded(&png).unwrap_err().contains("cut short"));
        assert!(embedded(b"GIF89a").is_err());
        assert_eq!(embedded(SIGNATURE).unwrap(), Embedded::default());
    }
}
