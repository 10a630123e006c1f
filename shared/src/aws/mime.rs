//! Raw MIME for emails with attachments: SESv2's simple content has no attachments, so those
//! emails go out as `multipart/mixed` text that we build here (RFC 5322, 2045, 2046, 2047, 2231).
//!
//! Every line ends in CRLF, as the RFCs and SES require. Text and attachments are base64 in
//! 76-character lines, so any UTF-8 body and any bytes pass unchanged through mail relays. Header
//! values are stripped of CR and LF, so a subject or file name can never inject a header.

use crate::encoding::base64_encode;
use crate::ports::{Attachment, EmailMessage};

/// The longest encoded line RFC 2045 allows for base64 content.
const LINE: usize = 76;

/// Builds the whole message. `boundary` must not occur in the content: callers pass one with a
/// `_`, a character base64 output never contains. `date` is an RFC 5322 date.
pub(crate) fn multipart_mixed(
    from: &str,
    message: &EmailMessage,
    boundary: &str,
    date: &str,
) -> String {
    let mut out = String::new();
    header(&mut out, "From", from);
    header(&mut out, "To", message.to.as_str());
    if !message.cc.is_empty() {
        let cc: Vec<&str> = message.cc.iter().map(|e| e.as_str()).collect();
        header(&mut out, "Cc", &cc.join(", "));
    }
    header(&mut out, "Subject", &encoded_word(&message.subject));
    header(&mut out, "Date", date);
    header(&mut out, "MIME-Version", "1.0");
    header(
        &mut out,
        "Content-Type",
        &format!("multipart/mixed; boundary=\"{boundary}\""),
    );
    out.push_str("\r\n");

    out.push_str(&format!("--{boundary}\r\n"));
    header(&mut out, "Content-Type", "text/plain; charset=UTF-8");
    header(&mut out, "Content-Transfer-Encoding", "base64");
    out.push_str("\r\n");
    base64_lines(&mut out, message.body.as_bytes());

    for attachment in &message.attachments {
        out.push_str(&format!("--{boundary}\r\n"));
        attachment_part(&mut out, attachment);
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

fn attachment_part(out: &mut String, attachment: &Attachment) {
    let content_type = media_type(&attachment.content_type);
    let name = file_name_params(&attachment.filename);
    header(
        out,
        "Content-Type",
        &format!("{content_type}; name{}", name.0),
    );
    header(
        out,
        "Content-Disposition",
        &format!("attachment; {}", name.1),
    );
    header(out, "Content-Transfer-Encoding", "base64");
    out.push_str("\r\n");
    base64_lines(out, &attachment.bytes);
}

fn header(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.extend(value.chars().filter(|c| *c != '\r' && *c != '\n'));
    out.push_str("\r\n");
}

fn base64_lines(out: &mut String, bytes: &[u8]) {
    let encoded = base64_encode(bytes);
    // Base64 output is ASCII, so slicing it by bytes never splits a character.
    for start in (0..encoded.len()).step_by(LINE) {
        out.push_str(&encoded[start..(start + LINE).min(encoded.len())]);
        out.push_str("\r\n");
    }
}

/// A header value as an RFC 2047 encoded word when it is not plain printable ASCII.
fn encoded_word(text: &str) -> String {
    let text: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        text
    } else {
        format!("=?UTF-8?B?{}?=", base64_encode(text.as_bytes()))
    }
}

/// The attachment's declared media type when it looks like `type/subtype`, else the generic
/// one: a malformed type would make mail clients hide or mangle the attachment.
fn media_type(declared: &str) -> &str {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match declared.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => declared,
        _ => "application/octet-stream",
    }
}

/// The `name` parameter of Content-Type (returned with its `=`/`*=`) and the `filename`
/// parameter of Content-Disposition. ASCII names are quoted; others use RFC 2231's
/// `filename*=UTF-8''...`, which every current mail client reads.
fn file_name_params(filename: &str) -> (String, String) {
    if filename.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let quoted = filename.replace('\\', "\\\\").replace('"', "\\\"");
        (format!("=\"{quoted}\""), format!("filename=\"{quoted}\""))
    } else {
        let encoded = rfc2231(filename);
        (
            format!("*=UTF-8''{encoded}"),
            format!("filename*=UTF-8''{encoded}"),
        )
    }
}

fn rfc2231(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::base64_decode;

    fn message() -> EmailMessage {
        EmailMessage {
            to: "agent@example.org".parse().unwrap(),
            cc: vec![
                "closings@example.org".parse().unwrap(),
                "lead@example.org".parse().unwrap(),
            ],
            subject: "Escrow packet\r\nBcc: evil@example.org".into(),
            body: "Hello,\nthe packet is attached.".into(),
            attachments: vec![Attachment {
                filename: "referral \"A\".pdf".into(),
                content_type: "application/pdf".into(),
                bytes: [0x25, 0x50, 0x44, 0x46, 0, 1, 2, 255].repeat(20),
            }],
        }
    }

    #[test]
    fn headers_and_parts_are_crlf_and_attachments_are_base64() {
        let raw = multipart_mixed(
            "Referrals <noreply@example.com>",
            &message(),
            "=_b_1",
            "Thu, 01 Jan 2026 00:00:00 +0000",
        );
        assert!(!raw.replace("\r\n", "").contains('\n'), "bare LF in {raw}");
        assert!(raw.starts_with(
            "From: Referrals <noreply@example.com>\r\nTo: agent@example.org\r\n\
             Cc: closings@example.org, lead@example.org\r\n"
        ));
        // The CRLF in the subject did not start a new header.
        assert!(raw.contains("Subject: Escrow packetBcc: evil@example.org\r\n"));
        assert!(!raw.contains("\r\nBcc:"));
        assert!(
            raw.contains("Content-Type: multipart/mixed; boundary=\"=_b_1\"\r\n\r\n--=_b_1\r\n")
        );
        assert!(raw.contains(
            "Content-Type: application/pdf; name=\"referral \\\"A\\\".pdf\"\r\n\
             Content-Disposition: attachment; filename=\"referral \\\"A\\\".pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        ));
        assert!(raw.ends_with("--=_b_1--\r\n"));

        let parts: Vec<&str> = raw.split("--=_b_1").collect();
        assert_eq!(parts.len(), 4, "preamble, text, attachment, closing");
        let body_of = |part: &str| {
            let (_, body) = part.split_once("\r\n\r\n").unwrap();
            assert!(body.lines().all(|l| l.len() <= LINE));
            base64_decode(&body.replace("\r\n", "")).unwrap()
        };
        assert_eq!(body_of(parts[1]), b"Hello,\nthe packet is attached.");
        assert_eq!(body_of(parts[2]), message().attachments[0].bytes);
    }

    #[test]
    fn non_ascii_subjects_and_names_are_encoded_and_bad_types_are_generic() {
        let mut m = message();
        m.cc.clear();
        m.subject = "Maison à vendre".into();
        m.attachments[0].filename = "contrat é.pdf".into();
        m.attachments[0].content_type = "pdf\r\nX-Evil: 1".into();
        let raw = multipart_mixed("noreply@example.com", &m, "=_b_2", "date");
        assert!(!raw.contains("Cc:"));
        assert!(raw.contains(&format!(
            "Subject: =?UTF-8?B?{}?=\r\n",
            base64_encode("Maison à vendre".as_bytes())
        )));
        assert!(raw.contains(
            "Content-Type: application/octet-stream; name*=UTF-8''contrat%20%C3%A9.pdf\r\n"
        ));
        assert!(raw.contains("filename*=UTF-8''contrat%20%C3%A9.pdf\r\n"));
    }
}
