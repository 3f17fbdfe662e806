//! No SQL is built from user input (B6): every `format!` that writes SQL in the store interpolates only
//! the store's own constants (column lists, dialect words) or column names from a fixed list; values
//! always go as bound parameters. Read from the source, so a new interpolation fails here until it is
//! shown to be constant.

/// What a SQL `format!` may interpolate.
const ALLOWED: &[&str] = &[
    "ORDER_COLUMNS",
    "ORDER_ATTACHED_FLAGS",
    "CANCELLATION_COLUMNS",
    "REFUND_COLUMNS",
    "REQUEST_COLUMNS",
    "WAREHOUSE_COLUMNS",
    "WEBHOOK_COLUMNS",
    "DELIVERY_COLUMNS",
    "EVENT_COLUMNS",
    "JOINED_EVENT_COLUMNS",
    "DIALECT.lock_order",
    "DIALECT.like",
    "DIALECT.skip_locked",
    "DIALECT.identity_primary_key",
    // `["number", "channel_order_id", "customer_name", "customer_email"]` in the order search.
    "column",
    // `CANCELLATION_COLUMNS` prefixed with `c.` in the cancellation list.
    "columns.join(\", \")",
];

const SQL_WORDS: &[&str] = &[
    "SELECT ", "INSERT ", "UPDATE ", "DELETE ", " FROM ", " WHERE ", " LIKE", "ESCAPE",
];

/// The `format!(…)` calls of `source`: whether the result goes straight into a query, the format
/// string and its arguments.
fn format_calls(source: &str) -> Vec<(bool, String, Vec<String>)> {
    let mut calls = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("format!(") {
        let mut from = start.saturating_sub(40);
        while !rest.is_char_boundary(from) {
            from -= 1;
        }
        let before = &rest[from..start];
        let into_query = ["query(&", "query_scalar(&", "::new(", "push("]
            .iter()
            .any(|call| before.trim_end().ends_with(call));
        let after = &rest[start + "format!(".len()..];
        let mut depth = 1;
        let mut in_string = false;
        let mut escaped = false;
        let mut end = after.len();
        for (index, character) in after.char_indices() {
            match (in_string, escaped, character) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, false, '"') => in_string = !in_string,
                (false, _, '(') => depth += 1,
                (false, _, ')') => {
                    depth -= 1;
                    if depth == 0 {
                        end = index;
                        break;
                    }
                }
                _ => {}
            }
        }
        let call = &after[..end];
        if let Some(open) = call.find('"') {
            let close = closing_quote(call, open);
            calls.push((
                into_query,
                call[open + 1..close].to_owned(),
                arguments(&call[close + 1..]),
            ));
        }
        rest = &after[end..];
    }
    calls
}

/// Where the string literal opened at `open` ends (its unescaped closing quote).
fn closing_quote(text: &str, open: usize) -> usize {
    let mut escaped = false;
    for (index, character) in text[open + 1..].char_indices() {
        match (escaped, character) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return open + 1 + index,
            _ => {}
        }
    }
    text.len()
}

/// The comma-separated arguments after a format string, commas inside strings or brackets kept.
fn arguments(text: &str) -> Vec<String> {
    let (mut found, mut current) = (Vec::new(), String::new());
    let (mut depth, mut in_string) = (0, false);
    for character in text.chars() {
        match character {
            '"' => in_string = !in_string,
            '(' | '[' if !in_string => depth += 1,
            ')' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                found.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    found.push(current.trim().to_owned());
    found.into_iter().filter(|argument| !argument.is_empty()).collect()
}

/// The `{…}` placeholders of a format string (`{}` as empty).
fn placeholders(literal: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut characters = literal.chars().peekable();
    while let Some(character) = characters.next() {
        if character == '{' {
            if characters.peek() == Some(&'{') {
                characters.next();
                continue;
            }
            let name: String = characters.by_ref().take_while(|c| *c != '}').collect();
            found.push(name.split(':').next().unwrap_or_default().to_owned());
        }
    }
    found
}

#[test]
fn every_sql_format_in_the_store_interpolates_only_its_own_constants() {
    let mut checked = 0;
    for (file, source) in [
        ("backend.rs", include_str!("../src/backend.rs")),
        ("lib.rs", include_str!("../src/lib.rs")),
        ("outbox.rs", include_str!("../src/outbox.rs")),
    ] {
        for (into_query, literal, arguments) in format_calls(source) {
            if !into_query && !SQL_WORDS.iter().any(|word| literal.contains(word)) {
                continue;
            }
            checked += 1;
            let mut positional = arguments.iter();
            for placeholder in placeholders(&literal) {
                let interpolated = if placeholder.is_empty() {
                    positional.next().cloned().unwrap_or_default()
                } else {
                    placeholder
                };
                assert!(
                    ALLOWED.contains(&interpolated.as_str()),
                    "{file}: SQL interpolates `{interpolated}` in \"{literal}\"; bind it as a parameter, or show it is constant"
                );
            }
        }
    }
    assert!(checked >= 10, "the SQL formats were found ({checked})");
}

#[test]
fn the_checker_catches_an_interpolated_value() {
    let source = r#"sqlx::query(&format!("SELECT * FROM orders WHERE number = '{number}'"))"#;
    let calls = format_calls(source);
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0, "it goes into a query");
    assert_eq!(placeholders(&calls[0].1), ["number"]);
    assert!(!ALLOWED.contains(&"number"));
}
