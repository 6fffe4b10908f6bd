//! Reading rendered markdown tables in tests.

/// The rows of a rendered markdown table, each as trimmed cells (separator row skipped).
pub(crate) fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|-") && !l.starts_with("|:"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The table under the title line that starts with `title` in `text` (a record's `Display`,
/// or what the console printed): its lines up to the next blank line; empty without one.
#[allow(dead_code)] // not every test target reads a titled table
pub(crate) fn table_under(text: &str, title: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(title));
    lines.next();
    lines
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}
