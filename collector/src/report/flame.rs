//! Flame graphs as inline SVG, made by inferno from collapsed stacks.

/// A stack line as inferno reads it: frames `;`-separated, weights after the last space, so a
/// stack must not contain newlines; anything else inferno takes as a frame name.
fn line(stack: &str) -> String {
    stack.replace(['\n', '\r'], " ")
}

fn options(title: &str, count_name: &str, width: usize) -> inferno::flamegraph::Options<'static> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = count_name.to_string();
    options.image_width = Some(width);
    // Static: no script, so several graphs live on one page; frames keep their <title>
    // tooltips.
    options.no_javascript = true;
    options.hash = true;
    options
}

/// inferno's output as an inline `<svg>` element.
fn draw(mut options: inferno::flamegraph::Options<'_>, lines: &[String]) -> Option<String> {
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out).ok()?;
    let text = String::from_utf8(out).ok()?;
    let start = text.find("<svg")?;
    Some(text[start..].replacen(" onload=\"init(evt)\"", "", 1))
}

/// An SVG `<svg>…</svg>` element (no XML declaration, no script) for `stacks` (collapsed,
/// root first, and their weights), ready to inline in HTML; None when there is nothing to draw.
pub fn svg(title: &str, count_name: &str, stacks: &[(&str, u64)], width: usize) -> Option<String> {
    let lines: Vec<String> = stacks
        .iter()
        .filter(|(s, w)| *w > 0 && !s.is_empty())
        .map(|(s, w)| format!("{} {w}", line(s)))
        .collect();
    if lines.is_empty() {
        return None;
    }
    draw(options(title, count_name, width), &lines)
}

/// A differential flame graph: frames as wide as in `after`, red where `after` has more than
/// `before`, blue where less (inferno's differential mode, counts as given: normalise before).
pub fn differential_svg(
    title: &str,
    count_name: &str,
    before: &[(String, u64)],
    after: &[(String, u64)],
    width: usize,
) -> Option<String> {
    let folded = |stacks: &[(String, u64)]| {
        stacks
            .iter()
            .filter(|(s, w)| *w > 0 && !s.is_empty())
            .map(|(s, w)| format!("{} {w}\n", line(s)))
            .collect::<String>()
    };
    let (before, after) = (folded(before), folded(after));
    if after.is_empty() {
        return None;
    }
    let mut pairs = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        before.as_bytes(),
        after.as_bytes(),
        &mut pairs,
    )
    .ok()?;
    let lines: Vec<String> = String::from_utf8(pairs)
        .ok()?
        .lines()
        .map(str::to_string)
        .collect();
    draw(options(title, count_name, width), &lines)
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// 1234567 ns -> "1.23ms".
pub fn duration(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.2}s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2}ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1}µs", ns / 1e3)
    } else {
        format!("{ns}ns")
    }
}

/// The last `n` frames of a collapsed stack, with `…;` when some were left out.
pub fn leaf_frames(stack: &str, n: usize) -> String {
    let frames: Vec<&str> = stack.split(';').collect();
    if frames.len() <= n {
        stack.to_string()
    } else {
        format!("…;{}", frames[frames.len() - n..].join(";"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_functions_and_nothing_for_nothing() {
        let svg = svg("t", "ns", &[("main;main.chargeCard", 10), ("main;x", 5)], 800);
        let svg = svg.unwrap_or_default();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("main.chargeCard"));
        assert!(!svg.contains("init(evt)"));
        assert_eq!(super::svg("t", "ns", &[], 800), None);
    }

    #[test]
    fn differential_colours_what_grew() {
        let before = [("main;a".to_string(), 10), ("main;b".to_string(), 10)];
        let after = [("main;a".to_string(), 10), ("main;b".to_string(), 40)];
        let svg = differential_svg("d", "ns", &before, &after, 800).unwrap_or_default();
        // inferno's differential titles carry the change: "main;b" grew by 30 of 50.
        assert!(svg.contains("<title>b (40 ns, 80.00%; +60.00%)</title>"), "{svg}");
        assert!(svg.contains("<title>a (10 ns, 20.00%; 0.00%)</title>"), "{svg}");
        assert_eq!(differential_svg("d", "ns", &before, &[], 800), None);
    }
}
