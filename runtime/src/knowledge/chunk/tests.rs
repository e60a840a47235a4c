//! Tests of chunking, kept beside the module so it stays readable.

use std::collections::BTreeSet;

use super::*;
use crate::knowledge::extract::tests::Rng;
use crate::knowledge::extract::{Format, Limits, extract};
use crate::knowledge::tokens::ModelTokens;
use e2e::pdf as testpdf;

/// Words plus two, like a model's `[CLS]` and `[SEP]`: easy to reason about.
struct Words;

impl TokenCount for Words {
    fn tokens(&self, text: &str) -> usize {
        text.split_whitespace().count() + 2
    }
}

fn model() -> &'static ModelTokens {
    ModelTokens::shared().unwrap()
}

fn doc(blocks: Vec<Block>) -> Extracted {
    Extracted {
        title: None,
        blocks,
        pages: None,
    }
}

fn heading(level: u8, text: &str) -> Block {
    Block::Heading {
        level,
        text: text.into(),
    }
}

fn para(text: &str) -> Block {
    Block::Paragraph(text.into())
}

fn markdown(text: &str) -> Extracted {
    extract(text.as_bytes(), Format::Markdown, &Limits::default()).unwrap()
}

fn assert_all_fit(chunks: &[Chunk], counter: &dyn TokenCount, max: usize) {
    for chunk in chunks {
        let tokens = counter.tokens(&chunk.text);
        assert!(tokens <= max, "{tokens} tokens > {max}: {:?}", chunk.text);
    }
}

#[test]
fn paragraphs_under_one_heading_are_packed_until_the_limit() {
    // Premise: none of these paragraphs is an early-boundary anchor.
    let paragraphs = [
        "one two three four five",
        "six seven eight nine ten",
        "first second third fourth fifth",
    ];
    assert!(
        paragraphs
            .iter()
            .all(|p| !fnv1a(p).is_multiple_of(ANCHOR_EVERY))
    );
    let mut blocks = vec![heading(1, "Refunds"), heading(2, "Card payments")];
    blocks.extend(paragraphs.iter().map(|p| para(p)));
    // 20 tokens: 2 special + 4 for the path line leave 14 words, two paragraphs.
    let chunks = chunk(&doc(blocks), &Words, 20);
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Refunds › Card payments\n\none two three four five\n\nsix seven eight nine ten",
            "Refunds › Card payments\n\nfirst second third fourth fifth",
        ]
    );
    assert_eq!(chunks[1].ordinal, 1);
    assert_eq!(chunks[1].heading, "Refunds › Card payments");
    assert_eq!(
        chunks[1].hash,
        <[u8; 32]>::from(Sha256::digest(texts[1].as_bytes()))
    );
}

#[test]
fn every_chunk_starts_with_its_heading_path() {
    let chunks = chunk(
        &markdown(
            "Intro before any heading.\n\n# Refunds\n\nGeneral rules.\n\n## Card payments\n\n\
             Cards are refunded in 5 days.\n\n- Visa\n- Mastercard\n\n### Disputes\n\nCall us.\n\n\
             ## Bank transfers\n\nTransfers take longer.\n",
        ),
        model(),
        ModelTokens::MAX_TOKENS,
    );
    let got: Vec<(&str, &str)> = chunks
        .iter()
        .map(|c| (c.heading.as_str(), c.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("", "Intro before any heading."),
            ("Refunds", "Refunds\n\nGeneral rules."),
            (
                "Refunds › Card payments",
                "Refunds › Card payments\n\nCards are refunded in 5 days.\n\n- Visa\n- Mastercard"
            ),
            (
                "Refunds › Card payments › Disputes",
                "Refunds › Card payments › Disputes\n\nCall us."
            ),
            (
                "Refunds › Bank transfers",
                "Refunds › Bank transfers\n\nTransfers take longer."
            ),
        ]
    );
}

#[test]
fn a_long_paragraph_is_split_at_sentence_ends() {
    let sentences: Vec<String> = (0..10)
        .map(|i| format!("Sentence {i} has six words here."))
        .collect();
    let text = sentences.join(" ");
    let chunks = chunk(&doc(vec![para(&text)]), &Words, 20);
    assert_all_fit(&chunks, &Words, 20);
    assert!(chunks.len() > 1);
    for chunk in &chunks {
        assert!(
            chunk.text.ends_with('.'),
            "cut inside a sentence: {:?}",
            chunk.text
        );
    }
    // 18 words fit: three whole sentences a chunk, the rest in the last.
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| c.text.split_whitespace().count())
        .collect();
    assert_eq!(sizes, [18, 18, 18, 6]);
    let joined: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(joined.join(" "), text);
}

#[test]
fn every_chunk_of_a_long_table_repeats_the_header_row() {
    let rows: Vec<Vec<String>> = (0..60)
        .map(|i| {
            vec![
                format!("Plan {i}"),
                format!("{i}.99 € per month"),
                format!("{} days", i % 30),
            ]
        })
        .collect();
    let blocks = vec![
        heading(1, "Pricing"),
        Block::Table {
            header: vec!["Plan".into(), "Price".into(), "Refund window".into()],
            rows: rows.clone(),
        },
    ];
    let chunks = chunk(&doc(blocks), model(), ModelTokens::MAX_TOKENS);
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert_all_fit(&chunks, model(), ModelTokens::MAX_TOKENS);
    let mut seen = Vec::new();
    for chunk in &chunks {
        let mut lines = chunk.text.lines();
        assert_eq!(lines.next(), Some("Pricing"));
        assert_eq!(lines.next(), Some(""));
        assert_eq!(lines.next(), Some("Plan | Price | Refund window"));
        seen.extend(lines.map(str::to_owned));
    }
    let expected: Vec<String> = rows.iter().map(|row| row.join(" | ")).collect();
    assert_eq!(seen, expected, "every row exactly once, in order");
}

#[test]
fn a_small_table_stays_with_the_text_before_it() {
    let chunks = chunk(
        &markdown("# Fees\n\nOur fees:\n\n| Plan | Fee |\n|---|---|\n| Pro | 9 |\n"),
        model(),
        ModelTokens::MAX_TOKENS,
    );
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["Fees\n\nOur fees:\n\nPlan | Fee\nPro | 9"]);
}

/// A document with every awkward shape: long prose, a huge word, text without spaces,
/// a long code block, a wide table and a very deep heading path.
fn awkward_markdown() -> String {
    let mut md = String::from("# Handbook\n\n");
    for section in 0..8 {
        md.push_str(&format!("## Section {section}\n\n"));
        for paragraph in 0..6 {
            let sentence = format!(
                "Paragraph {paragraph} of section {section} explains refunds, invoices and delivery windows in detail. "
            );
            md.push_str(&sentence.repeat(1 + (paragraph * 3) % 7));
            md.push_str("\n\n");
        }
    }
    md.push_str("## Oddities\n\n");
    md.push_str(&"ж".repeat(5000));
    md.push_str("\n\n");
    md.push_str(&"退款将在十四天内处理。".repeat(60));
    md.push_str("\n\n```\n");
    for line in 0..80 {
        md.push_str(&format!(
            "let value_{line} = compute(input_{line}, {line});\n"
        ));
    }
    md.push_str("```\n\n| a | b |\n|---|---|\n");
    md.push_str(&format!(
        "| {} | {} |\n",
        "wide ".repeat(300),
        "cell ".repeat(300)
    ));
    for level in 1..=6 {
        md.push_str(&format!(
            "{} {}\n\n",
            "#".repeat(level),
            "A rather long heading name ".repeat(6)
        ));
    }
    md.push_str("Deep text.\n");
    md
}

#[test]
fn a_long_awkward_document_fits_the_model_everywhere_and_loses_no_text() {
    let doc = markdown(&awkward_markdown());
    let chunks = chunk(&doc, model(), ModelTokens::MAX_TOKENS);
    assert!(chunks.len() > 40);
    assert_all_fit(&chunks, model(), ModelTokens::MAX_TOKENS);
    let all: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(all.matches('ж').count(), 5000);
    assert_eq!(all.matches('退').count(), 60);
    for line in 0..80 {
        assert!(all.contains(&format!(
            "let value_{line} = compute(input_{line}, {line});"
        )));
    }
    assert_eq!(all.matches("wide").count(), 300);
    assert_eq!(all.matches("cell").count(), 300);
    let deep = chunks.last().unwrap();
    assert!(deep.text.ends_with("Deep text."));
    assert_eq!(
        deep.heading.matches(PATH_SEPARATOR).count(),
        5,
        "the full path is kept"
    );
    assert!(
        deep.text.starts_with('…'),
        "the path line is shortened: {:?}",
        deep.text
    );
}

#[test]
fn chunking_is_deterministic() {
    let doc = markdown(&awkward_markdown());
    assert_eq!(
        chunk(&doc, model(), ModelTokens::MAX_TOKENS),
        chunk(&doc.clone(), model(), ModelTokens::MAX_TOKENS)
    );
}

fn hashes_by_heading(chunks: &[Chunk]) -> Vec<(String, BTreeSet<[u8; 32]>)> {
    let mut out: Vec<(String, BTreeSet<[u8; 32]>)> = Vec::new();
    for chunk in chunks {
        match out.last_mut() {
            Some((heading, set)) if *heading == chunk.heading => {
                set.insert(chunk.hash);
            }
            _ => out.push((chunk.heading.clone(), BTreeSet::from([chunk.hash]))),
        }
    }
    out
}

#[test]
fn changing_one_section_changes_only_that_sections_chunks() {
    let before = awkward_markdown();
    let after = before.replace(
        "Paragraph 2 of section 3 explains",
        "Paragraph 2 of section 3, revised in March, explains",
    );
    assert_ne!(before, after);
    let old = hashes_by_heading(&chunk(&markdown(&before), model(), ModelTokens::MAX_TOKENS));
    let new = hashes_by_heading(&chunk(&markdown(&after), model(), ModelTokens::MAX_TOKENS));
    assert_eq!(old.len(), new.len());
    for ((heading, old_set), (new_heading, new_set)) in old.iter().zip(&new) {
        assert_eq!(heading, new_heading);
        if heading == "Handbook › Section 3" {
            assert_ne!(old_set, new_set);
        } else {
            assert_eq!(old_set, new_set, "{heading} changed");
        }
    }
}

#[test]
fn an_edit_early_in_a_long_section_leaves_most_later_chunks_alone() {
    let paragraphs: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "Note {i}: orders placed on day {} ship within {} business days.",
                i * 7 % 31,
                i % 5 + 1
            )
        })
        .collect();
    let text = paragraphs.join("\n\n");
    let edited = text.replacen(
        "Note 0:",
        "Note 0, updated after the audit of the warehouse:",
        1,
    );
    let old = chunk(
        &extract(text.as_bytes(), Format::Text, &Limits::default()).unwrap(),
        model(),
        128,
    );
    let new = chunk(
        &extract(edited.as_bytes(), Format::Text, &Limits::default()).unwrap(),
        model(),
        128,
    );
    let old_hashes: BTreeSet<_> = old.iter().map(|c| c.hash).collect();
    let changed = new.iter().filter(|c| !old_hashes.contains(&c.hash)).count();
    assert!(old.len() >= 15);
    assert!(
        changed * 4 <= new.len(),
        "{changed} of {} chunks changed",
        new.len()
    );
}

#[test]
fn pdf_chunks_never_cross_pages_and_carry_their_page() {
    let pdf = testpdf::sample_document(4);
    let doc = extract(&pdf, Format::Pdf, &Limits::default()).unwrap();
    let chunks = chunk(&doc, model(), ModelTokens::MAX_TOKENS);
    assert_all_fit(&chunks, model(), ModelTokens::MAX_TOKENS);
    let pages: Vec<u32> = chunks.iter().filter_map(|c| c.page).collect();
    assert_eq!(pages.len(), chunks.len());
    assert!(pages.windows(2).all(|w| w[0] <= w[1]));
    for page in 1..=4 {
        let first = chunks.iter().find(|c| c.page == Some(page)).unwrap();
        assert!(
            first.text.starts_with(&format!("Section {page}: ")),
            "{:?}",
            first.text
        );
        assert_eq!(first.heading, "");
    }
}

#[test]
fn absurdly_small_limits_never_panic_and_still_hold() {
    let doc = markdown(&awkward_markdown());
    for max in [0, 1, 2, 3, 4, 7] {
        let chunks = chunk(&doc, &Words, max);
        assert_all_fit(&chunks, &Words, max);
        if max >= 3 {
            assert!(!chunks.is_empty());
        }
    }
}

#[test]
fn random_documents_always_fit() {
    let mut rng = Rng::new(7);
    fn text(rng: &mut Rng) -> String {
        let words = [
            "refund",
            "a",
            "b.",
            "Card",
            "x",
            "—",
            "退款。",
            "\n",
            "|",
            "long-word-without-breaks",
        ];
        let n = rng.below(120);
        (0..n)
            .map(|_| words[rng.below(words.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
    for round in 0..150 {
        let mut blocks = Vec::new();
        for _ in 0..12 {
            let block = match rng.below(6) {
                0 => Block::Heading {
                    level: (rng.below(6) + 1) as u8,
                    text: text(&mut rng),
                },
                1 => Block::ListItem(text(&mut rng)),
                2 => Block::Code(text(&mut rng)),
                3 => {
                    let header = vec![text(&mut rng), text(&mut rng)];
                    let rows = (0..rng.below(5))
                        .map(|_| vec![text(&mut rng), text(&mut rng), text(&mut rng)])
                        .collect();
                    Block::Table { header, rows }
                }
                4 => Block::Page(rng.below(9) as u32),
                _ => Block::Paragraph(text(&mut rng)),
            };
            blocks.push(block);
        }
        let max = 8 + rng.below(60);
        // The real tokenizer is slow in debug builds: a fifth of the rounds use it.
        let counter: &dyn TokenCount = if round % 5 == 0 { model() } else { &Words };
        let chunks = chunk(&doc(blocks), counter, max);
        assert_all_fit(&chunks, counter, max);
    }
}
