//! The commonest pieces of the JSON rescind stores — keys, kinds, statuses and the fixed sentences of
//! a cancellation's steps and history lines — kept as two-byte tokens ([`shorten`], read back by
//! [`expand`]). A cancellation's history row and its steps were about 680 and 520 bytes, most of it
//! these pieces: each cancellation then wrote a page of `order_changes` and half a page of
//! `cancellations` to the WAL. A token is [`MARK`] and one printable ASCII character naming its phrase.
//! `serde_json` writes every control character inside a string escaped (`\u0001`), so [`MARK`] never
//! appears in its output: expanding every token gives back the very text that was shortened, byte for
//! byte, whatever it held, and text without a token (every row written before) reads as it is.

use anyhow::{anyhow, Result};
use std::borrow::Cow;

/// Starts a token; the character after it is `' '` plus the phrase's place in [`PHRASES`].
const MARK: char = '\u{1}';
const FIRST_CODE: u8 = b' ';

/// The phrases, by their place. Stored rows name phrases by place, so this list is never reordered or
/// changed and nothing is removed from it. It holds the 95 a token can name (the printable ASCII
/// characters); more would need a second mark (U+0002, which `serde_json` never writes either).
const PHRASES: &[&str] = &[
    // 0–19: keys and the joints between values, as steps and history lines write them. A joint ends
    // before the next key's opening quote unless it names that key, and a value phrase holds no
    // quote, so that what follows each can still be a phrase (the longest that fits is taken).
    r#"{"kind":""#,
    r#"","message":""#,
    r#"","status":""#,
    r#"","data":{"status":""#,
    r#"","data":{"#,
    r#"","actor":""#,
    r#"{"attempts":"#,
    r#"{"at":"#,
    r#","kind":""#,
    r#"","updated_at":"#,
    r#"","last_error":""#,
    r#","generation":"#,
    r#""},{"kind":""#,
    r#""}},{"kind":""#,
    r#""}}]"#,
    r#""}]"#,
    r#""},{"#,
    r#""}},{"#,
    r#"","#,
    r#""message":""#,
    // 20–29: the keys of history lines' data.
    r#""cancellation_id":"can_"#,
    r#""refund_id":"ref_"#,
    r#""amount":""#,
    r#""method":""#,
    r#""requested_by":""#,
    r#""request_id":""#,
    r#""reference":""#,
    r#""attempts":""#,
    r#""status":""#,
    r#""kind":""#,
    // 30–39: a step as a cancellation's steps column begins it, and as its history line does.
    r#"channel_cancel","message":""#,
    r#"warehouse_cancel","message":""#,
    r#"refund","message":""#,
    r#"restock","message":""#,
    r#"notify","message":""#,
    r#"step.channel_cancel","message":"channel_cancel: "#,
    r#"step.warehouse_cancel","message":"warehouse_cancel: "#,
    r#"step.refund","message":"refund: "#,
    r#"step.restock","message":"restock: "#,
    r#"step.notify","message":"notify: "#,
    // 40–45: step statuses.
    "succeeded",
    "skipped",
    "waiting",
    "failed",
    "pending",
    "running",
    // 46–67: history kinds.
    r#"cancellation.created","actor":""#,
    "cancellation.created",
    "cancellation.completed",
    "cancellation.processing",
    "cancellation.failed",
    "cancellation.needs_attention",
    "cancellation.retried",
    "cancellation.undone",
    "cancellation_request.accepted",
    "cancellation_request.rejected",
    "cancellation_request.reopened",
    "order.cancelled",
    "order.lines_cancelled",
    "order.imported",
    "refund.recorded",
    "refund.created",
    "stock.restocked",
    "outbound.cancel_requested",
    "outbound.deleted",
    "outbound.status_changed",
    "warning.refunded_but_will_ship",
    "warning.shipped_after_cancel",
    // 68–87: the fixed sentences of steps and history lines, and their fixed beginnings.
    "skipped: own store order, cancelled in rescind",
    "skipped: no warehouse handles this order",
    "not run: stock was never deducted for this order",
    "skipped: no customer notifier is configured; tell the customer yourself",
    "Order cancelled; it will not ship.",
    "Cancellation completed.",
    "Cancellation requested by merchant: ",
    "Cancellation requested by ",
    "Refund of ",
    " recorded (",
    "refunded ",
    "skipped: nothing was paid",
    "skipped: everything paid has already been refunded",
    "skipped: not requested",
    "skipped: already restocked (or in progress)",
    "skipped: no outbound request is at the warehouse",
    "not run: the channel cancel did not succeed",
    "not run: the warehouse could not stop the shipment",
    "refund to the original payment through the payment provider",
    " made through the payment provider.",
    // 88–94: values.
    "merchant",
    "store_credit",
    "original_payment",
    "token:tok_",
    "system",
    "customer",
    "operator",
];

/// For each pair of first two bytes, the phrases that begin with them, longest first (an index into
/// [`Starts::lists`], 0 for none).
struct Starts {
    by_pair: Box<[u8; 1 << 16]>,
    lists: Vec<Vec<u8>>,
}

fn starts() -> &'static Starts {
    static STARTS: std::sync::OnceLock<Starts> = std::sync::OnceLock::new();
    STARTS.get_or_init(|| {
        let mut by_pair = Box::new([0u8; 1 << 16]);
        let mut lists: Vec<Vec<u8>> = vec![Vec::new()];
        for (place, phrase) in PHRASES.iter().enumerate() {
            let bytes = phrase.as_bytes();
            let pair = usize::from(bytes[0]) << 8 | usize::from(bytes[1]);
            if by_pair[pair] == 0 {
                by_pair[pair] = u8::try_from(lists.len()).expect("fewer lists than phrases");
                lists.push(Vec::new());
            }
            let list = &mut lists[usize::from(by_pair[pair])];
            list.push(u8::try_from(place).expect("at most 95 phrases"));
            list.sort_by_key(|place| std::cmp::Reverse(PHRASES[usize::from(*place)].len()));
        }
        Starts { by_pair, lists }
    })
}

/// `json` with every phrase it holds as a token, the longest at each place first.
pub(crate) fn shorten(json: &str) -> String {
    let starts = starts();
    let bytes = json.as_bytes();
    let mut shortened = String::with_capacity(json.len());
    let (mut copied, mut at) = (0, 0);
    'text: while at + 1 < bytes.len() {
        let list = starts.by_pair[usize::from(bytes[at]) << 8 | usize::from(bytes[at + 1])];
        if list != 0 {
            for &place in &starts.lists[usize::from(list)] {
                let phrase = PHRASES[usize::from(place)];
                if bytes[at..].starts_with(phrase.as_bytes()) {
                    // Phrases are ASCII: `at` and the phrase's end are character boundaries.
                    shortened.push_str(&json[copied..at]);
                    shortened.push(MARK);
                    shortened.push(char::from(FIRST_CODE + place));
                    at += phrase.len();
                    copied = at;
                    continue 'text;
                }
            }
        }
        at += 1;
    }
    shortened.push_str(&json[copied..]);
    shortened
}

/// `text` with its tokens written out: the text [`shorten`] was given.
pub(crate) fn expand(text: &str) -> Result<Cow<'_, str>> {
    let Some(first) = text.find(MARK) else {
        return Ok(Cow::Borrowed(text));
    };
    let mut expanded = String::with_capacity(text.len() * 3);
    expanded.push_str(&text[..first]);
    let mut rest = &text[first..];
    while let Some(mark) = rest.find(MARK) {
        expanded.push_str(&rest[..mark]);
        let code = rest.as_bytes().get(mark + 1).copied();
        let phrase = code
            .and_then(|code| code.checked_sub(FIRST_CODE))
            .and_then(|place| PHRASES.get(usize::from(place)))
            .ok_or_else(|| anyhow!("stored text names a phrase this build does not know: {code:?}"))?;
        expanded.push_str(phrase);
        // The code is ASCII, so the text goes on at a character boundary.
        rest = &rest[mark + 2..];
    }
    expanded.push_str(rest);
    Ok(Cow::Owned(expanded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phrase_is_ascii_of_two_bytes_or_more_and_there_are_at_most_ninety_five() {
        assert!(PHRASES.len() <= 95);
        for phrase in PHRASES {
            assert!(phrase.len() >= 2 && phrase.is_ascii(), "{phrase}");
            assert!(!phrase.contains(MARK), "{phrase}");
        }
    }

    #[test]
    fn shortened_text_expands_to_exactly_what_it_was() {
        let texts = [
            r#"[{"kind":"channel_cancel","message":"skipped: own store order, cancelled in rescind","status":"skipped"},{"attempts":1,"kind":"refund","message":"refunded 2600 as store_credit","status":"succeeded"}]"#,
            r#"[{"kind":"cancellation.created","actor":"token:tok_01M95KWDRRZZ7TX19D98YJ3GDP","message":"Cancellation requested by merchant: customer asked","data":{"cancellation_id":"can_01","requested_by":"merchant"}}]"#,
            "",
            "x",
            "\"",
            r#"{"kind":"#,
            r#"{"kind":""#,
            r#"["日本語の理由 \"引用\" \\ \u0001 end","step.refund"]"#,
        ];
        for text in texts {
            let shortened = shorten(text);
            assert!(shortened.len() <= text.len());
            assert_eq!(expand(&shortened).expect("expands"), text);
        }
    }

    #[test]
    fn a_cancellations_history_line_shrinks_to_a_fraction() {
        let text = r#"[{"kind":"step.notify","message":"notify: skipped: no customer notifier is configured; tell the customer yourself","data":{"status":"skipped"}}]"#;
        let shortened = shorten(text);
        assert!(
            shortened.len() * 5 < text.len(),
            "{} of {} bytes",
            shortened.len(),
            text.len()
        );
    }

    #[test]
    fn tokens_stored_once_read_back_the_same_in_every_later_build() {
        // As this list first wrote them (2026-12-06): a changed or moved phrase fails here.
        let stored = "[\u{1} \u{1}>\u{1}d\u{1}\"\u{1}I\u{1},\u{1}Bnot run\u{1}\"\u{1}I\u{1}/";
        assert_eq!(
            expand(stored).expect("known tokens"),
            r#"[{"kind":"channel_cancel","message":"skipped: own store order, cancelled in rescind","status":"skipped"},{"kind":"notify","message":"not run","status":"skipped"}]"#
        );
        assert_eq!(shorten(&expand(stored).expect("known tokens")), stored);
    }

    #[test]
    fn text_without_a_token_reads_as_it_is() {
        assert!(matches!(
            expand(r#"[{"kind":"note"}]"#).expect("reads"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_token_this_build_does_not_know_is_an_error() {
        assert!(expand("[\u{1}\u{7f}]").is_err());
        assert!(expand("[\u{1}").is_err());
    }
}
