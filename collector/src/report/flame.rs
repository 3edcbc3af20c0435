//! Flame graphs as inline SVG, made by inferno from collapsed stacks.

/// An SVG `<svg>…</svg>` element (no XML declaration, no script) for `stacks` (collapsed,
/// root first, and their weights), ready to inline in HTML; None when there is nothing to draw.
pub fn svg(title: &str, count_name: &str, stacks: &[(&str, u64)], width: usize) -> Option<String> {
    // Frames are `;`-separated and the weight follows the last space, so a stack must not
    // contain newlines; anything else inferno takes as a frame name.
    let lines: Vec<String> = stacks
        .iter()
        .filter(|(s, w)| *w > 0 && !s.is_empty())
        .map(|(s, w)| format!("{} {w}", s.replace(['\n', '\r'], " ")))
        .collect();
    if lines.is_empty() {
        return None;
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = count_name.to_string();
    options.image_width = Some(width);
    // Static: no script, so several graphs live on one page; frames keep their <title>
    // tooltips.
    options.no_javascript = true;
    options.hash = true;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out).ok()?;
    let text = String::from_utf8(out).ok()?;
    let start = text.find("<svg")?;
    Some(text[start..].replacen(" onload=\"init(evt)\"", "", 1))
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
}
