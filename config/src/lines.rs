//! Maps dotted paths to the lines they start on, so errors found in the parsed tree can point
//! back into the file.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// Dotted path (`service.pipelines.traces.exporters[1]`) -> 1-based line.
#[derive(Debug, Default)]
pub(crate) struct LineIndex {
    lines: HashMap<String, usize>,
    /// Keys seen a second time in one mapping, (path, line), in file order.
    duplicates: Vec<(String, usize)>,
}

/// Where the next node in the event stream sits.
enum Frame {
    /// `path` is None inside a complex (non-scalar) key, which no path can name.
    Map {
        path: Option<String>,
        /// The key just read; None while a key is awaited.
        key: Option<Option<String>>,
    },
    Seq {
        path: Option<String>,
        next: usize,
    },
}

impl LineIndex {
    /// Indexes `text`. A second parser is used only for positions, so on a syntax error the
    /// index simply covers what came before it.
    pub(crate) fn build(text: &str) -> Self {
        let mut index = LineIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        // Driving next_token by hand (not Parser::load) keeps the parser's internal asserts
        // out of reach.
        while let Ok((event, mark)) = parser.next_token() {
            match event {
                Event::StreamEnd => break,
                Event::Scalar(..) | Event::Alias(_) => {
                    index.place(&mut stack, &event, mark.line());
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = index.place(&mut stack, &event, mark.line());
                    stack.push(match event {
                        Event::MappingStart(..) => Frame::Map { path, key: None },
                        _ => Frame::Seq { path, next: 0 },
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    match stack.last_mut() {
                        // The container was a key: its entry now awaits a value.
                        Some(Frame::Map { key: key @ None, .. }) => *key = Some(None),
                        // The container was a value: the entry is done.
                        Some(Frame::Map { key, .. }) => *key = None,
                        Some(Frame::Seq { next, .. }) => *next += 1,
                        None => {}
                    }
                }
                _ => {}
            }
        }
        index
    }

    /// Places a node in its parent: records its line when it starts a path, advances the
    /// parent past scalars, and returns the path a container node will carry.
    fn place(&mut self, stack: &mut [Frame], event: &Event, line: usize) -> Option<String> {
        let is_scalar = matches!(event, Event::Scalar(..) | Event::Alias(_));
        match stack.last_mut() {
            None => Some(String::new()),
            // A key: its line is the line of the entry.
            Some(Frame::Map {
                path,
                key: key @ None,
            }) => {
                let text = match event {
                    Event::Scalar(text, ..) => Some(text.clone()),
                    _ => None,
                };
                if let (Some(parent), Some(text)) = (path.as_ref(), text.as_ref()) {
                    let key_path = join_key(parent, text);
                    if self.lines.contains_key(&key_path) {
                        self.duplicates.push((key_path, line));
                    } else {
                        self.record(key_path, line);
                    }
                }
                if is_scalar {
                    *key = Some(text);
                }
                // Nothing under a complex key can be named by a path.
                None
            }
            // A value: already indexed at its key.
            Some(Frame::Map {
                path,
                key: key @ Some(_),
            }) => {
                let child = match (path.as_ref(), key.as_ref()) {
                    (Some(parent), Some(Some(k))) => Some(join_key(parent, k)),
                    _ => None,
                };
                if is_scalar {
                    *key = None;
                }
                child
            }
            Some(Frame::Seq { path, next }) => {
                let child = path.as_ref().map(|parent| format!("{parent}[{next}]"));
                if let Some(child) = &child {
                    self.record(child.clone(), line);
                }
                if is_scalar {
                    *next += 1;
                }
                child
            }
        }
    }

    fn record(&mut self, path: String, line: usize) {
        self.lines.entry(path).or_insert(line);
    }

    /// Keys repeated within one mapping, (path, line of the repeat), in file order.
    pub(crate) fn duplicates(&self) -> &[(String, usize)] {
        &self.duplicates
    }

    /// The line of `path`, or of its nearest indexed ancestor; None for the root.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut current = path;
        while !current.is_empty() {
            if let Some(line) = self.lines.get(current) {
                return Some(*line);
            }
            current = parent(current);
        }
        None
    }
}

/// `parent` + `.key`, with no dot at the root.
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Drops the last segment (`a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``).
fn parent(path: &str) -> &str {
    if path.ends_with(']') {
        if let Some(open) = path.rfind('[') {
            return &path[..open];
        }
    }
    match path.rfind('.') {
        Some(dot) => &path[..dot],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
receivers:
  otlp/2:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
  other: {a: 1, b: [x, y]}
service:
  pipelines:
    traces:
      receivers: [otlp/2]
      exporters:
        - debug
        - otlp/x
        - {k: v}
        - [n1, n2]
        - last
";

    #[test]
    fn indexes_keys_and_items() {
        let idx = LineIndex::build(TEXT);
        assert_eq!(idx.line("receivers"), Some(1));
        assert_eq!(idx.line("receivers.otlp/2"), Some(2));
        assert_eq!(idx.line("receivers.otlp/2.protocols.grpc.endpoint"), Some(5));
        assert_eq!(idx.line("receivers.other.b[1]"), Some(6));
        assert_eq!(idx.line("service.pipelines.traces.receivers[0]"), Some(10));
        assert_eq!(idx.line("service.pipelines.traces.exporters"), Some(11));
        assert_eq!(idx.line("service.pipelines.traces.exporters[0]"), Some(12));
        assert_eq!(idx.line("service.pipelines.traces.exporters[1]"), Some(13));
        assert_eq!(idx.line("service.pipelines.traces.exporters[2].k"), Some(14));
        assert_eq!(idx.line("service.pipelines.traces.exporters[3][1]"), Some(15));
        assert_eq!(idx.line("service.pipelines.traces.exporters[4]"), Some(16));
    }

    #[test]
    fn falls_back_to_nearest_ancestor() {
        let idx = LineIndex::build(TEXT);
        assert_eq!(idx.line("receivers.otlp/2.protocols.http"), Some(3));
        assert_eq!(idx.line("service.pipelines.traces.processors"), Some(9));
        assert_eq!(idx.line("service.pipelines.traces.exporters[9]"), Some(11));
        assert_eq!(idx.line("nowhere.at.all"), None);
        assert_eq!(idx.line(""), None);
    }

    #[test]
    fn survives_odd_documents() {
        let idx = LineIndex::build("a: [1, 2\nb: {");
        assert_eq!(idx.line("a"), Some(1));
        let idx = LineIndex::build("? [x, y]\n: value\nafter: 1\n");
        assert_eq!(idx.line("after"), Some(3));
        let idx = LineIndex::build("base: &b\n  x: 1\nuse: *b\nnext: 2\n");
        assert_eq!(idx.line("use"), Some(3));
        assert_eq!(idx.line("next"), Some(4));
        assert_eq!(LineIndex::build("").line("a"), None);
    }

    #[test]
    fn finds_duplicate_keys() {
        let idx = LineIndex::build("a:\n  x: 1\n  y: 2\n  x: 3\nb: [{k: 1, k: 2}]\na: 5\n");
        assert_eq!(
            idx.duplicates(),
            [
                ("a.x".to_owned(), 4),
                ("b[0].k".to_owned(), 5),
                ("a".to_owned(), 6)
            ]
        );
        assert_eq!(idx.line("a.x"), Some(2));
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("a.b[2]"), "a.b");
        assert_eq!(parent("a.b"), "a");
        assert_eq!(parent("a"), "");
        assert_eq!(parent("a[0][1]"), "a[0]");
    }
}
