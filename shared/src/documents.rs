//! The closing documents (ES-1) as a one-page PDF: what the agent and the closings team file
//! when a referral enters In Escrow.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

use crate::domain::agent::Agent;
use crate::domain::referral::{Program, Referral};
use crate::domain::values::Money;

/// The facts the documents state, in the order they are printed.
pub fn closing_lines(
    referral: &Referral,
    agent: &Agent,
    escrow_entry: u32,
    fee: Money,
) -> Vec<String> {
    let p = referral.pipeline();
    let money = |m: Option<Money>| m.map_or_else(|| "-".to_owned(), |m| format!("${m}"));
    let fee_line = match (referral.program, agent.fee_percent) {
        (Program::Ppl, _) => "Referral fee: none (pay per lead)".to_owned(),
        (_, Some(pct)) => format!("Referral fee: ${fee} ({pct}% of the sale price)"),
        (_, None) => "Referral fee: no agreement on file".to_owned(),
    };
    vec![
        "Closing documents".to_owned(),
        format!("Referral: {} (escrow entry {escrow_entry})", referral.id),
        format!("Client: {}", referral.client.name),
        format!("Agent: {} ({})", agent.name, agent.id),
        format!("Sale price: {}", money(p.and_then(|p| p.sale_price))),
        format!(
            "Close date: {}",
            p.and_then(|p| p.close_date)
                .map_or_else(|| "-".to_owned(), |d| d.to_string())
        ),
        fee_line,
    ]
}

/// Renders lines as a one-page A4 PDF in Helvetica. Characters outside printable ASCII are
/// replaced, since the standard fonts carry no others.
pub fn render_pdf(lines: &[String]) -> Vec<u8> {
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let page_id = Ref::new(3);
    let font = Ref::new(4);
    let contents = Ref::new(5);
    let font_name = Name(b"F1");

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids([page_id]).count(1);
    let mut page = pdf.page(page_id);
    page.media_box(Rect::new(0.0, 0.0, 595.0, 842.0));
    page.parent(tree);
    page.contents(contents);
    page.resources().fonts().pair(font_name, font);
    page.finish();
    pdf.type1_font(font).base_font(Name(b"Helvetica"));

    let mut content = Content::new();
    content.begin_text();
    content.set_font(font_name, 12.0);
    content.set_leading(20.0);
    content.next_line(72.0, 770.0);
    for line in lines {
        let ascii: String = line
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .collect();
        content.show(Str(ascii.as_bytes()));
        content.next_line_using_leading();
    }
    content.end_text();
    pdf.stream(contents, &content.finish());
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es_1_pdf_is_a_pdf_carrying_each_line() {
        let bytes = render_pdf(&["Sale price: $915000.00".into(), "Caf\u{e9}".into()]);
        assert!(bytes.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("(Sale price: $915000.00) Tj"), "{text}");
        assert!(text.contains("(Caf?) Tj"));
        assert!(text.trim_end().ends_with("%%EOF"));
    }
}
