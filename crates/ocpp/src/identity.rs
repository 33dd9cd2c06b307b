//! Charge point identities: which strings may name a charge point (`ocpp.identity_charset`).

/// The longest charge point identity accepted, in characters (OCPP 2.0.1's identifierString
/// allows 48).
pub const MAX_CHARGE_POINT_ID_LEN: usize = 48;

/// Which characters a charge point identity may have (`ocpp.identity_charset`). The rule is
/// a value handed to whoever checks an identity (the upgrade, the admin API, the credentials
/// file), not a process-wide setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityRule {
    /// OCPP 2.0.1's identifierString: `a-z A-Z 0-9 * - _ = : + | @ .`, at most 48 characters.
    #[default]
    IdentifierString,
    /// For fleets whose identities need more: identifierString's punctuation plus letters,
    /// combining marks and decimal digits of assigned code points, without the invisible
    /// fillers that pass for letters or marks (U+3164, U+034F, variation selectors, ...).
    Unicode,
}

impl IdentityRule {
    /// The name `ocpp.identity_charset` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityRule::IdentifierString => "identifier_string",
            IdentityRule::Unicode => "unicode",
        }
    }

    pub fn from_name(name: &str) -> Option<IdentityRule> {
        match name {
            "identifier_string" => Some(IdentityRule::IdentifierString),
            "unicode" => Some(IdentityRule::Unicode),
            _ => None,
        }
    }

    /// Whether `id` may be a charge point identity under this rule: 1 to
    /// [`MAX_CHARGE_POINT_ID_LEN`] allowed characters, and not `.` or `..` (which would make a
    /// path segment mean something else).
    ///
    pub fn allows(self, id: &str) -> bool {
        let len = id.chars().count();
        (1..=MAX_CHARGE_POINT_ID_LEN).contains(&len)
            && id != "."
            && id != ".."
            && match self {
                IdentityRule::IdentifierString => id.chars().all(is_identifier_char),
                IdentityRule::Unicode => id
                    .chars()
                    .all(|c| is_identifier_char(c) || is_visible_letter_mark_or_digit(c)),
            }
    }
}

/// Whether `id` may be an identity under the widest rule ([`IdentityRule::Unicode`]): for the
/// paths that only look an identity up (commands from Kafka or other nodes), where a stricter
/// rule in force simply means nobody by that name is connected. Never passes a control, white
/// space, format or invisible character.
pub fn is_valid_identity(id: &str) -> bool {
    IdentityRule::Unicode.allows(id)
}

/// A character of OCPP 2.0.1's identifierString.
fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '*' | '-' | '_' | '=' | ':' | '+' | '|' | '@' | '.')
}

/// A letter, combining mark or decimal digit of an assigned code point, except the fillers and
/// selectors that Unicode classes as letters or marks but that show as nothing.
fn is_visible_letter_mark_or_digit(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    let shown = matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::NonspacingMark
            | G::SpacingMark
            | G::EnclosingMark
            | G::DecimalNumber
    );
    shown && !is_invisible_filler(c)
}

/// Letters and marks that render as blank: the Hangul fillers, the combining grapheme joiner,
/// the Mongolian free variation selectors and vowel separator, the Khmer inherent vowels, the
/// variation selectors and the blank Braille pattern.
fn is_invisible_filler(c: char) -> bool {
    matches!(c,
        '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}'
        | '\u{034F}'
        | '\u{180B}'..='\u{180F}'
        | '\u{17B4}' | '\u{17B5}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{E0100}'..='\u{E01EF}'
        | '\u{2800}')
}

#[cfg(test)]
mod tests {
    use super::{IdentityRule, is_valid_identity};

    /// Identities neither rule accepts: empty, path-like, white space, controls, format and
    /// invisible characters, unassigned code points.
    const NEVER: &[&str] = &[
        "",
        ".",
        "..",
        " CP1",
        "CP1 ",
        "RDAM 123",
        "CP1\u{00A0}",
        "\u{3000}CP1",
        "CP\u{202E}1",
        "CP\u{200B}1",
        "\u{FEFF}CP1",
        "CP\u{2028}1",
        "CP\u{2029}1",
        "CP\u{2066}1",
        "CP\u{00AD}1",
        "CP\u{E0041}1",
        "CP\n1",
        "CP\u{7F}1",
        "CP\u{85}1",
        "a/b",
        "a%b",
        "CP\u{3164}X",
        "CP\u{115F}X",
        "CP\u{1160}X",
        "CP\u{FFA0}X",
        "CP\u{034F}X",
        "CP\u{180B}X",
        "CP\u{180E}X",
        "CP\u{180F}X",
        "CP\u{17B4}X",
        "CP\u{17B5}X",
        "CP\u{FE00}X",
        "CP\u{FE0F}X",
        "CP\u{E0100}X",
        "CP\u{E01EF}X",
        "CP\u{2800}X",
        // Unassigned (as of Unicode 16), and a private-use one.
        "CP\u{0378}X",
        "CP\u{E000}X",
    ];

    #[test]
    fn identifier_string_by_default() {
        let rule = IdentityRule::default();
        assert_eq!(rule, IdentityRule::IdentifierString);
        for good in [
            "CP1",
            "CP:1",
            "a.b",
            "...",
            "*-_=:+|@.",
            "RDAM-123",
            "x@y|z",
        ] {
            assert!(rule.allows(good), "{good:?}");
        }
        for bad in ["été", "CP#1", "CP~1", "CP(1)", "ÖKO1", "充电桩1"] {
            assert!(!rule.allows(bad), "{bad:?}");
        }
        for bad in NEVER {
            assert!(!rule.allows(bad), "{bad:?}");
        }
        assert!(rule.allows(&"x".repeat(48)));
        assert!(!rule.allows(&"x".repeat(49)));
    }

    #[test]
    fn unicode_letters_marks_and_digits_but_no_fillers() {
        let rule = IdentityRule::Unicode;
        for good in [
            "CP1",
            "été",
            "e\u{0301}te",
            "ÖKO-1",
            "充电桩1",
            "ポイント",
            "٣٤",
            "CP:1",
        ] {
            assert!(rule.allows(good), "{good:?}");
        }
        for bad in NEVER {
            assert!(!rule.allows(bad), "{bad:?}");
        }
        assert!(rule.allows(&"é".repeat(48)));
        assert!(!rule.allows(&"é".repeat(49)));
        assert!(is_valid_identity("été") && !is_valid_identity("CP\u{3164}X"));
        for rule in [IdentityRule::IdentifierString, IdentityRule::Unicode] {
            assert_eq!(IdentityRule::from_name(rule.as_str()), Some(rule));
        }
        assert_eq!(IdentityRule::from_name("ascii"), None);
    }
}
