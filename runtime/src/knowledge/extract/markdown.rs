//! Markdown to blocks, from CommonMark events with GitHub's tables and task lists.
//!
//! Inline markup (emphasis, links, inline code) is reduced to its text; the link target is
//! dropped because it means nothing to a reader of a passage. A YAML front-matter block is
//! not content, but its `title:` is a title when the document has no level-1 heading.
//! HTML blocks inside Markdown go through the HTML extractor.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::{Block, Extracted, collapse_whitespace};

/// A table being read: the header row, the body rows, the row and cell being filled.
#[derive(Default)]
struct TableBuild {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    row: Vec<String>,
}

#[derive(Default)]
struct State {
    blocks: Vec<Block>,
    title: Option<String>,
    /// The front matter's `title:`, used when no level-1 heading comes.
    front_matter_title: Option<String>,
    /// Inline text of the paragraph, heading or list item being read.
    text: String,
    /// How many list items enclose the current position.
    item_depth: usize,
    heading: Option<u8>,
    /// A fenced or indented code block's text while inside one.
    code: Option<String>,
    /// Raw HTML of the HTML block being read.
    html: Option<String>,
    /// Front matter being read.
    metadata: Option<String>,
    table: Option<TableBuild>,
    /// The current table cell's text while inside one.
    cell: Option<String>,
}

impl State {
    /// Where inline text goes now.
    fn sink(&mut self) -> &mut String {
        if let Some(cell) = self.cell.as_mut() {
            cell
        } else {
            &mut self.text
        }
    }

    /// Ends the list item text read so far, if any (a nested list or a code block follows).
    fn flush_item(&mut self) {
        let text = collapse_lines(&self.text);
        self.text.clear();
        if !text.is_empty() {
            self.blocks.push(Block::ListItem(text));
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => {
                self.text.clear();
                self.heading = Some(level as u8);
            }
            Tag::Paragraph if self.item_depth > 0 && !self.text.trim().is_empty() => {
                // A loose list item's second paragraph stays in the same item.
                self.text.push('\n');
            }
            Tag::Paragraph => {}
            Tag::Item => {
                if self.item_depth > 0 {
                    self.flush_item();
                }
                self.item_depth += 1;
            }
            Tag::CodeBlock(_) => {
                if self.item_depth > 0 {
                    self.flush_item();
                }
                self.code = Some(String::new());
            }
            Tag::HtmlBlock => self.html = Some(String::new()),
            Tag::MetadataBlock(_) => self.metadata = Some(String::new()),
            Tag::Table(_) => self.table = Some(TableBuild::default()),
            Tag::TableHead | Tag::TableRow => {
                if let Some(table) = self.table.as_mut() {
                    table.row.clear();
                }
            }
            Tag::TableCell => self.cell = Some(String::new()),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                let text = collapse_whitespace(&self.text);
                self.text.clear();
                if let Some(level) = self.heading.take()
                    && !text.is_empty()
                {
                    if level == 1 && self.title.is_none() {
                        self.title = Some(text.clone());
                    }
                    self.blocks.push(Block::Heading { level, text });
                }
            }
            TagEnd::Paragraph if self.item_depth == 0 => {
                let text = collapse_lines(&self.text);
                self.text.clear();
                if !text.is_empty() {
                    self.blocks.push(Block::Paragraph(text));
                }
            }
            TagEnd::Item => {
                self.flush_item();
                self.item_depth = self.item_depth.saturating_sub(1);
            }
            TagEnd::CodeBlock => {
                if let Some(code) = self.code.take() {
                    let code = code.trim_matches('\n').trim_end();
                    if !code.trim().is_empty() {
                        self.blocks.push(Block::Code(code.to_owned()));
                    }
                }
            }
            TagEnd::HtmlBlock => {
                if let Some(html) = self.html.take() {
                    self.blocks.extend(super::html::extract(&html).blocks);
                }
            }
            TagEnd::MetadataBlock(_) => {
                if let Some(metadata) = self.metadata.take() {
                    self.front_matter_title = front_matter_title(&metadata);
                }
            }
            TagEnd::TableCell => {
                if let (Some(cell), Some(table)) = (self.cell.take(), self.table.as_mut()) {
                    table.row.push(collapse_whitespace(&cell));
                }
            }
            TagEnd::TableHead => {
                if let Some(table) = self.table.as_mut() {
                    table.header = std::mem::take(&mut table.row);
                }
            }
            TagEnd::TableRow => {
                if let Some(table) = self.table.as_mut() {
                    let row = std::mem::take(&mut table.row);
                    if row.iter().any(|cell| !cell.is_empty()) {
                        table.rows.push(row);
                    }
                }
            }
            TagEnd::Table => {
                if let Some(table) = self.table.take() {
                    self.blocks.push(Block::Table {
                        header: table.header,
                        rows: table.rows,
                    });
                }
            }
            _ => {}
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => {
                if let Some(code) = self.code.as_mut() {
                    code.push_str(&text);
                } else if let Some(metadata) = self.metadata.as_mut() {
                    metadata.push_str(&text);
                } else {
                    self.sink().push_str(&text);
                }
            }
            Event::Code(text) => self.sink().push_str(&text),
            Event::Html(html) => {
                if let Some(block) = self.html.as_mut() {
                    block.push_str(&html);
                }
            }
            Event::SoftBreak => self.sink().push(' '),
            Event::HardBreak => self.sink().push('\n'),
            Event::TaskListMarker(done) => self.sink().push_str(if done { "[x] " } else { "[ ] " }),
            _ => {}
        }
    }
}

/// Collapses spaces within each line and drops blank lines: hard breaks stay line breaks.
fn collapse_lines(text: &str) -> String {
    text.lines()
        .map(collapse_whitespace)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `title: Something` (quotes optional) in YAML front matter.
fn front_matter_title(metadata: &str) -> Option<String> {
    metadata.lines().find_map(|line| {
        let value = line.strip_prefix("title:")?.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value)
            .trim();
        (!value.is_empty()).then(|| value.to_owned())
    })
}

pub(super) fn extract(text: &str) -> Extracted {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let mut state = State::default();
    for event in Parser::new_ext(text, options) {
        state.event(event);
    }
    Extracted {
        title: state.title.or(state.front_matter_title),
        blocks: state.blocks,
        pages: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(markdown: &str) -> Vec<Block> {
        extract(markdown).blocks
    }

    #[test]
    fn headings_paragraphs_lists_and_code_become_blocks() {
        let doc = extract(
            "# Refunds\n\nWe refund **all** orders\nwithin [14 days](https://x.test).\n\n\
             ## Card payments\n\n- Visa\n- `Mastercard`\n  1. nested one\n\n```sh\nrefund --all\n  --now\n```\n",
        );
        assert_eq!(doc.title.as_deref(), Some("Refunds"));
        assert_eq!(
            doc.blocks,
            vec![
                Block::Heading {
                    level: 1,
                    text: "Refunds".into()
                },
                Block::Paragraph("We refund all orders within 14 days.".into()),
                Block::Heading {
                    level: 2,
                    text: "Card payments".into()
                },
                Block::ListItem("Visa".into()),
                Block::ListItem("Mastercard".into()),
                Block::ListItem("nested one".into()),
                Block::Code("refund --all\n  --now".into()),
            ]
        );
    }

    #[test]
    fn gfm_tables_keep_their_header_row() {
        assert_eq!(
            blocks("| Plan | Price |\n|:--|--:|\n| Free | 0 € |\n| Pro | *9* € |\n"),
            vec![Block::Table {
                header: vec!["Plan".into(), "Price".into()],
                rows: vec![
                    vec!["Free".into(), "0 €".into()],
                    vec!["Pro".into(), "9 €".into()],
                ],
            }]
        );
    }

    #[test]
    fn loose_list_items_keep_their_paragraphs_together_and_tasks_their_state() {
        assert_eq!(
            blocks("- first para\n\n  second para\n\n- [x] done\n- [ ] open\n"),
            vec![
                Block::ListItem("first para\nsecond para".into()),
                Block::ListItem("[x] done".into()),
                Block::ListItem("[ ] open".into()),
            ]
        );
    }

    #[test]
    fn front_matter_is_dropped_but_gives_a_title() {
        let doc =
            extract("---\ntitle: \"Shipping FAQ\"\ndate: 2024-01-01\n---\n\nWe ship daily.\n");
        assert_eq!(doc.title.as_deref(), Some("Shipping FAQ"));
        assert_eq!(doc.blocks, vec![Block::Paragraph("We ship daily.".into())]);
    }

    #[test]
    fn html_blocks_inside_markdown_are_read_as_html() {
        assert_eq!(
            blocks("<div align=\"center\">\n<p>Logo &amp; name</p>\n</div>\n\nText.\n"),
            vec![
                Block::Paragraph("Logo & name".into()),
                Block::Paragraph("Text.".into())
            ]
        );
    }

    #[test]
    fn hard_breaks_stay_line_breaks() {
        assert_eq!(
            blocks("Street 1  \nTown\n"),
            vec![Block::Paragraph("Street 1\nTown".into())]
        );
    }
}
