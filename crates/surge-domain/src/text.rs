//! Rules for free text that people type and other people read: names, titles, venues,
//! descriptions, reasons. Pure functions, shared by every validation.
//!
//! Control characters (NUL, escape sequences) break logs, terminals and CSV exports, and the
//! Unicode bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and friends) make text show
//! something else than it says ("Trojan Source", CVE-2021-42574). Neither has a place in a
//! name, so both are refused (422); multi-line text may keep line breaks and tabs.

/// What a refused text's message adds to its length rule.
pub const PLAIN_RULE: &str = "with no control or bidirectional-override characters";

/// True when `text` holds no control character (line breaks and tabs allowed only when
/// `multiline`) and no bidirectional control.
pub fn is_plain(text: &str, multiline: bool) -> bool {
    text.chars().all(|c| {
        let allowed_control = multiline && matches!(c, '\n' | '\r' | '\t');
        (!c.is_control() || allowed_control) && !is_bidi_control(c)
    })
}

/// The bidirectional formatting characters of Unicode's Bidi_Control property.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_in_any_script_are_plain() {
        for name in [
            "Sneaker size 42",
            "서울 콘서트",
            "Café — été",
            "שלום",
            "🎫 Final",
        ] {
            assert!(is_plain(name, false), "{name}");
        }
    }

    #[test]
    fn control_and_bidi_characters_are_not() {
        for name in [
            "a\u{0}b",
            "a\u{1b}[31mred",
            "a\u{202e}cba",
            "x\u{2066}y",
            "a\u{7f}",
            "a\u{85}",
        ] {
            assert!(!is_plain(name, false), "{name:?}");
            assert!(!is_plain(name, true), "{name:?}");
        }
    }

    #[test]
    fn only_multiline_text_keeps_line_breaks_and_tabs() {
        assert!(is_plain("line one\nline two\twith a tab\r\n", true));
        assert!(!is_plain("line one\nline two", false));
    }
}
