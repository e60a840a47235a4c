//! HTML to blocks, from a WHATWG tokenizer's tag and text stream without building a tree.
//!
//! Pages in the wild are malformed (unclosed `<p>` and `<li>`, stray end tags, tables
//! without `</td>`), so block structure comes from tag boundaries, the way browsers
//! recover: a block-level tag ends the text before it, a new cell ends the previous cell, a
//! new row the previous row. Navigation, footers, scripts, styles and the `<head>` are not
//! content and are dropped; the `<title>` is kept as the title. Entities are decoded by the
//! tokenizer (the full HTML5 table). Nothing here recurses, so hostile nesting cannot
//! overflow the stack.

use html5gum::{DefaultEmitter, Token, Tokenizer};

use super::{Block, Extracted, collapse_whitespace};

/// Elements whose content is never knowledge.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "head", "nav", "footer", "svg", "math", "iframe",
    "object", "canvas", "select", "button", "dialog",
];

/// What may appear in `<head>`; any other start tag there means the author forgot `<body>`.
const HEAD_CONTENT: &[&str] = &[
    "title", "meta", "link", "style", "script", "base", "noscript", "template",
];

/// Tags that end the running text before them (and start a new block).
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "aside",
    "header",
    "blockquote",
    "address",
    "figure",
    "figcaption",
    "details",
    "summary",
    "dl",
    "dt",
    "dd",
    "hr",
    "form",
    "fieldset",
    "legend",
    "body",
    "html",
    "center",
    "br",
];

/// What the running text becomes when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Paragraph,
    Heading(u8),
    ListItem,
    Code,
}

/// The outermost table being read. Inner tables are flattened into its cells.
#[derive(Default)]
struct TableBuild {
    /// Each row, and whether it came from `<thead>` or was all `<th>`.
    rows: Vec<(Vec<String>, bool)>,
    row: Option<Vec<String>>,
    row_all_th: bool,
    cell: Option<String>,
    in_thead: bool,
    /// Text outside any cell; browsers move it before the table.
    fostered: String,
    caption: Option<String>,
    in_caption: bool,
    /// Nested `<table>` depth inside this one.
    nested: usize,
}

impl TableBuild {
    fn end_cell(&mut self) {
        if let Some(cell) = self.cell.take() {
            self.row
                .get_or_insert_with(Vec::new)
                .push(collapse_whitespace(&cell));
        }
    }

    fn end_row(&mut self) {
        self.end_cell();
        if let Some(row) = self.row.take()
            && row.iter().any(|cell| !cell.is_empty())
        {
            let header = self.in_thead || self.row_all_th;
            self.rows.push((row, header));
        }
        self.row_all_th = true;
    }

    fn text(&mut self, text: &str) {
        if self.in_caption {
            self.caption.get_or_insert_with(String::new).push_str(text);
        } else if let Some(cell) = self.cell.as_mut() {
            cell.push_str(text);
        } else if !text.trim().is_empty() {
            self.fostered.push(' ');
            self.fostered.push_str(text);
        }
    }

    /// The finished table as blocks: a paragraph for fostered text and the caption, then
    /// the table — or plain paragraphs when it is a layout table (one row or one column).
    fn finish(mut self) -> Vec<Block> {
        self.end_row();
        let mut blocks = Vec::new();
        for text in [Some(self.fostered), self.caption].into_iter().flatten() {
            let text = collapse_whitespace(&text);
            if !text.is_empty() {
                blocks.push(Block::Paragraph(text));
            }
        }
        let single_column = self.rows.iter().all(|(row, _)| row.len() <= 1);
        if self.rows.len() < 2 || single_column {
            for (row, _) in self.rows {
                let text = row
                    .into_iter()
                    .filter(|cell| !cell.is_empty())
                    .collect::<Vec<_>>()
                    .join(" | ");
                if !text.is_empty() {
                    blocks.push(Block::Paragraph(text));
                }
            }
            return blocks;
        }
        // The first header row (from <thead> or all <th>) if the table starts with one,
        // otherwise the first row.
        let mut rows = self.rows.into_iter();
        let header = rows.next().map(|(row, _)| row).unwrap_or_default();
        blocks.push(Block::Table {
            header,
            rows: rows.map(|(row, _)| row).collect(),
        });
        blocks
    }
}

#[derive(Default)]
struct State {
    blocks: Vec<Block>,
    title: Option<String>,
    title_text: Option<String>,
    first_h1: Option<String>,
    /// Open skipped elements, innermost last.
    skipped: Vec<String>,
    text: String,
    kind: Option<Kind>,
    table: Option<TableBuild>,
}

impl State {
    fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Paragraph)
    }

    /// Ends the running text as a block of its kind.
    fn flush(&mut self) {
        let text = std::mem::take(&mut self.text);
        let block = match self.kind() {
            Kind::Code => {
                let code = text.trim_matches('\n').trim_end();
                (!code.trim().is_empty()).then(|| Block::Code(code.to_owned()))
            }
            kind => {
                let text = text
                    .lines()
                    .map(collapse_whitespace)
                    .filter(|line| !line.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                (!text.is_empty()).then(|| match kind {
                    Kind::Heading(level) => {
                        let text = collapse_whitespace(&text);
                        if level == 1 && self.first_h1.is_none() {
                            self.first_h1 = Some(text.clone());
                        }
                        Block::Heading { level, text }
                    }
                    Kind::ListItem => Block::ListItem(text),
                    _ => Block::Paragraph(text),
                })
            }
        };
        self.blocks.extend(block);
    }

    fn start(&mut self, name: &str, self_closing: bool) {
        if self.skipped.last().is_some_and(|open| open == "head")
            && (name == "body" || !HEAD_CONTENT.contains(&name))
        {
            // The author never closed <head>: the body starts here.
            self.skipped.pop();
        }
        if name == "title" {
            self.title_text = Some(String::new());
            return;
        }
        if SKIPPED.contains(&name) {
            if !self_closing {
                self.skipped.push(name.to_owned());
            }
            return;
        }
        if !self.skipped.is_empty() {
            return;
        }
        if let Some(table) = self.table.as_mut() {
            match name {
                "table" => table.nested += 1,
                "tr" if table.nested == 0 => {
                    table.end_row();
                    table.row = Some(Vec::new());
                }
                "td" | "th" if table.nested == 0 => {
                    table.end_cell();
                    if name == "td" {
                        table.row_all_th = false;
                    }
                    table.cell = Some(String::new());
                }
                "thead" if table.nested == 0 => {
                    table.end_row();
                    table.in_thead = true;
                }
                "tbody" | "tfoot" if table.nested == 0 => {
                    table.end_row();
                    table.in_thead = false;
                }
                "caption" if table.nested == 0 => table.in_caption = true,
                _ => table.text(" "),
            }
            return;
        }
        match name {
            "table" => {
                self.flush();
                self.kind = None;
                self.table = Some(TableBuild {
                    row_all_th: true,
                    ..TableBuild::default()
                });
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush();
                let level = name.as_bytes()[1] - b'0';
                self.kind = Some(Kind::Heading(level));
            }
            "li" => {
                self.flush();
                self.kind = Some(Kind::ListItem);
            }
            "ul" | "ol" => {
                self.flush();
                self.kind = None;
            }
            "pre" => {
                self.flush();
                self.kind = Some(Kind::Code);
            }
            "br" if self.kind() == Kind::Code => self.text.push('\n'),
            "br" => self.text.push('\n'),
            _ if BLOCK_TAGS.contains(&name) => {
                if self.kind() == Kind::ListItem {
                    // <li><p>…</p><p>…</p></li>: one item, two lines.
                    self.text.push('\n');
                } else if self.kind() != Kind::Code {
                    self.flush();
                    self.kind = None;
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, name: &str) {
        if name == "title" {
            if let Some(title) = self.title_text.take() {
                let title = collapse_whitespace(&title);
                if self.title.is_none() && !title.is_empty() {
                    self.title = Some(title);
                }
            }
            return;
        }
        if let Some(at) = self.skipped.iter().rposition(|open| open == name) {
            self.skipped.truncate(at);
            return;
        }
        if name == "body" || name == "html" {
            // Whatever was left open inside the body ends with it.
            self.skipped.clear();
        }
        if !self.skipped.is_empty() {
            return;
        }
        if let Some(table) = self.table.as_mut() {
            match name {
                "table" if table.nested > 0 => table.nested -= 1,
                "table" => {
                    if let Some(table) = self.table.take() {
                        self.blocks.extend(table.finish());
                    }
                }
                "td" | "th" if table.nested == 0 => table.end_cell(),
                "tr" if table.nested == 0 => table.end_row(),
                "thead" if table.nested == 0 => {
                    table.end_row();
                    table.in_thead = false;
                }
                "caption" => table.in_caption = false,
                _ => table.text(" "),
            }
            return;
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "li" | "pre" | "ul" | "ol" => {
                self.flush();
                self.kind = None;
            }
            _ if BLOCK_TAGS.contains(&name)
                && self.kind() != Kind::ListItem
                && self.kind() != Kind::Code =>
            {
                self.flush();
                self.kind = None;
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(title) = self.title_text.as_mut() {
            title.push_str(text);
            return;
        }
        if !self.skipped.is_empty() {
            return;
        }
        if let Some(table) = self.table.as_mut() {
            table.text(text);
        } else if self.kind() == Kind::Code {
            self.text.push_str(text);
        } else {
            // Source line breaks are just spaces in HTML; <br> made the real ones.
            self.text.push_str(&text.replace('\n', " "));
        }
    }

    fn finish(mut self) -> Extracted {
        if let Some(table) = self.table.take() {
            self.flush();
            self.blocks.extend(table.finish());
        } else {
            self.flush();
        }
        Extracted {
            title: self.title.or(self.first_h1),
            blocks: self.blocks,
            pages: None,
        }
    }
}

pub(super) fn extract(html: &str) -> Extracted {
    let mut emitter = DefaultEmitter::default();
    // Script, style, title and textarea content is raw text, not markup.
    emitter.naively_switch_states(true);
    let mut state = State::default();
    for token in Tokenizer::new_with_emitter(html, emitter) {
        let token = match token {
            Ok(token) => token,
            Err(never) => match never {},
        };
        match token {
            Token::StartTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                state.start(&name, tag.self_closing);
            }
            Token::EndTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                state.end(&name);
            }
            Token::String(text) => state.text(&String::from_utf8_lossy(&text.value)),
            Token::Comment(_) | Token::Doctype(_) | Token::Error(_) => {}
        }
    }
    state.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_becomes_headings_paragraphs_lists_tables_and_code() {
        let doc = extract(
            "<!doctype html><html><head><title>Help &amp; FAQ</title>\
             <style>p{color:red}</style><script>var x = '<p>no</p>';</script></head>\
             <body><nav><a href=/>Home</a> | <a href=/faq>FAQ</a></nav>\
             <h1>Refunds</h1><p>We refund   within\n14&nbsp;days.<br>Always.</p>\
             <h2>Card <em>payments</em></h2><ul><li>Visa<li>Mastercard</ul>\
             <table><thead><tr><th>Plan</th><th>Price</th></tr></thead>\
             <tbody><tr><td>Free<td>0 &euro;<tr><td>Pro</td><td>9 &#8364;</td></tr></tbody></table>\
             <pre><code>refund --all\n  --now</code></pre>\
             <footer>© Shop</footer></body></html>",
        );
        assert_eq!(doc.title.as_deref(), Some("Help & FAQ"));
        assert_eq!(
            doc.blocks,
            vec![
                Block::Heading {
                    level: 1,
                    text: "Refunds".into()
                },
                Block::Paragraph("We refund within 14 days.\nAlways.".into()),
                Block::Heading {
                    level: 2,
                    text: "Card payments".into()
                },
                Block::ListItem("Visa".into()),
                Block::ListItem("Mastercard".into()),
                Block::Table {
                    header: vec!["Plan".into(), "Price".into()],
                    rows: vec![
                        vec!["Free".into(), "0 €".into()],
                        vec!["Pro".into(), "9 €".into()],
                    ],
                },
                Block::Code("refund --all\n  --now".into()),
            ]
        );
    }

    #[test]
    fn a_table_without_thead_uses_its_first_row_as_header() {
        let doc =
            extract("<table><tr><td>Day<td>Hours<tr><td>Mon<td>9–5<tr><td>Sat<td>closed</table>");
        assert_eq!(
            doc.blocks,
            vec![Block::Table {
                header: vec!["Day".into(), "Hours".into()],
                rows: vec![
                    vec!["Mon".into(), "9–5".into()],
                    vec!["Sat".into(), "closed".into()],
                ],
            }]
        );
    }

    #[test]
    fn layout_tables_become_paragraphs_and_nested_tables_are_flattened() {
        let doc = extract(
            "<table><tr><td><p>Welcome to the shop.</p></td></tr>\
             <tr><td>Inner: <table><tr><td>a</td><td>b</td></tr></table></td></tr></table>",
        );
        assert_eq!(
            doc.blocks,
            vec![
                Block::Paragraph("Welcome to the shop.".into()),
                Block::Paragraph("Inner: a b".into()),
            ]
        );
    }

    #[test]
    fn a_missing_head_end_tag_does_not_swallow_the_body() {
        let doc = extract("<html><head><title>T</title><h1>Body starts</h1><p>Text</p>");
        assert_eq!(doc.title.as_deref(), Some("T"));
        assert_eq!(
            doc.blocks,
            vec![
                Block::Heading {
                    level: 1,
                    text: "Body starts".into()
                },
                Block::Paragraph("Text".into()),
            ]
        );
    }

    #[test]
    fn without_a_title_the_first_h1_is_the_title() {
        let doc = extract("<p>intro</p><h1>Main</h1><h1>Other</h1>");
        assert_eq!(doc.title.as_deref(), Some("Main"));
    }

    #[test]
    fn nasty_markup_does_not_panic_and_keeps_the_text_it_can() {
        let deep = "<div><ul><li><table><tr><td>".repeat(5000);
        let nasty = [
            "<",
            "</",
            "<<<>>>&&&;;",
            "<p>unclosed <b>bold <i>italic",
            "</td></tr></table></li></ul>stray ends",
            "<table><td>cell without row",
            "<script>never closed <p>hidden",
            "<title>never closed",
            "&#0; &#xD800; &#99999999; &bogus; &amp",
            "<p attr=\"unterminated>text",
            "<!-- unterminated comment",
            "<![CDATA[ x ]]><?php echo 1 ?>",
            "<svg><p>in svg</p></svg><p>after</p>",
            deep.as_str(),
        ];
        for html in nasty {
            let _ = extract(html);
        }
        let doc = extract("<p>unclosed <b>bold <i>italic");
        assert_eq!(
            doc.blocks,
            vec![Block::Paragraph("unclosed bold italic".into())]
        );
        let doc = extract("<svg><p>in svg</p></svg><p>after</p>");
        assert_eq!(doc.blocks, vec![Block::Paragraph("after".into())]);
        let doc = extract("<table><td>cell without row");
        assert_eq!(
            doc.blocks,
            vec![Block::Paragraph("cell without row".into())]
        );
    }
}
