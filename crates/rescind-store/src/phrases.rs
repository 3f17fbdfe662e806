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

/// The phrases, by their place. Stored rows name phrases by place, so this list is only ever added
/// to at its end — never reordered, never changed, nothing removed — and holds at most 95 (the
/// printable ASCII characters).
const PHRASES: &[&str] = &[
    // 0–9: the keys of steps and history lines.
    r#"{"kind":""#,
    r#"","message":""#,
    r#"","status":""#,
    r#"","data":{"#,
    r#"{"attempts":"#,
    r#","kind":""#,
    r#"{"at":"#,
    r#"","actor":""#,
    r#"{"status":""#,
    r#""cancellation_id":""#,
    // 10–19: more keys of history data.
    r#""refund_id":""#,
    r#""amount":""#,
    r#""method":""#,
    r#""requested_by":""#,
    r#""fulfillment_status":""#,
    r#""financial_status":""#,
    r#"","updated_at":"#,
    r#"","last_error":""#,
    r#","generation":"#,
    r#""reason":""#,
    // 20–29: step kinds as history kinds, and what their lines begin with.
    "step.channel_cancel",
    "step.warehouse_cancel",
    "step.refund",
    "step.restock",
    "step.notify",
    r#"channel_cancel: "#,
    r#"warehouse_cancel: "#,
    r#"refund: "#,
    r#"restock: "#,
    r#"notify: "#,
    // 30–49: history kinds.
    "cancellation.created",
    "cancellation.completed",
    "cancellation.processing",
    "cancellation.failed",
    "cancellation.needs_attention",
    "cancellation.retried",
    "cancellation.undone",
    "cancellation.requested",
    "cancellation.request_created",
    "cancellation_request.accepted",
    "cancellation_request.rejected",
    "cancellation_request.reopened",
    "order.cancelled",
    "order.imported",
    "order.lines_cancelled",
    "order.modified",
    "refund.recorded",
    "refund.created",
    "stock.restocked",
    "outbound.cancel_requested",
    // 50–59: step kinds and statuses as values.
    r#"channel_cancel""#,
    r#"warehouse_cancel""#,
    r#"refund""#,
    r#"restock""#,
    r#"notify""#,
    r#"succeeded""#,
    r#"skipped""#,
    r#"pending""#,
    r#"waiting""#,
    r#"failed""#,
    // 60–79: the fixed sentences of steps and history lines.
    "skipped: own store order, cancelled in rescind",
    "skipped: no warehouse handles this order",
    "not run: stock was never deducted for this order",
    "skipped: no customer notifier is configured; tell the customer yourself",
    "Order cancelled; it will not ship.",
    "Cancellation completed.",
    "Cancellation requested by ",
    "Refund of ",
    "refunded ",
    " recorded (",
    "skipped: nothing was paid",
    "skipped: everything paid has already been refunded",
    "skipped: not requested",
    "skipped: already restocked (or in progress)",
    "skipped: no outbound request is at the warehouse",
    "not run: the channel cancel did not succeed",
    "not run: the warehouse could not stop the shipment",
    "Cancellation processing: the channel and the warehouse are asked to stop the order first; it stays open until they have.",
    "waits for the channel and the warehouse, then: ",
    " made through the payment provider.",
    // 80–89: values.
    "merchant",
    "store_credit",
    "original_payment",
    "awaiting_shipment",
    "token:tok_",
    "system",
    "customer",
    "operator",
    "refund to the original payment through the payment provider",
    "refunded to the original payment (",
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
