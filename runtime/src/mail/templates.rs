//! The product's mails, as HTML and plain text. Every value a person chose (a tenant's name, an
//! inviter's name) is escaped in the HTML and kept to one line in the text; links come from the
//! public base URL only.

use chrono::{DateTime, Utc};

use super::Email;

/// An invitation into a tenant.
#[derive(Debug, Clone)]
pub struct Invitation<'a> {
    pub to: &'a str,
    pub tenant_name: &'a str,
    pub inviter: Option<&'a str>,
    /// "customer admin" or "customer operator", as people read it.
    pub role: &'a str,
    pub link: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// A password-reset link.
#[derive(Debug, Clone)]
pub struct PasswordReset<'a> {
    pub to: &'a str,
    pub link: &'a str,
    pub minutes: i64,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn plain(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The frame every mail shares: a heading, paragraphs, one button, and the link written out.
fn page(heading: &str, paragraphs: &[String], button: &str, link: &str, footer: &str) -> String {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p style=\"margin:0 0 16px;line-height:1.5\">{p}</p>"))
        .collect();
    let link = escape(link);
    format!(
        "<!doctype html><html><body style=\"margin:0;background:#f4f5f7;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2430\">\
<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td align=\"center\" style=\"padding:32px 16px\">\
<table role=\"presentation\" width=\"560\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#ffffff;border-radius:8px;padding:32px\"><tr><td>\
<h1 style=\"font-size:20px;margin:0 0 16px\">{heading}</h1>{body}\
<p style=\"margin:24px 0\"><a href=\"{link}\" style=\"background:#3b5bdb;color:#ffffff;text-decoration:none;padding:12px 20px;border-radius:6px;display:inline-block\">{button}</a></p>\
<p style=\"margin:0 0 16px;font-size:13px;color:#5c6370\">Or open this link: <a href=\"{link}\" style=\"color:#3b5bdb\">{link}</a></p>\
<p style=\"margin:0;font-size:13px;color:#5c6370\">{footer}</p>\
</td></tr></table></td></tr></table></body></html>"
    )
}

/// The invitation mail.
pub fn invitation(i: &Invitation<'_>) -> Email {
    let tenant = i.tenant_name;
    let expires = i.expires_at.format("%-d %B %Y, %H:%M UTC").to_string();
    let who_html = match i.inviter {
        Some(name) => format!("<strong>{}</strong> invited you", escape(name)),
        None => "You are invited".to_string(),
    };
    let who_text = match i.inviter {
        Some(name) => format!("{} invited you", plain(name)),
        None => "You are invited".to_string(),
    };
    let subject = format!("You're invited to {} on Konstruct", plain(tenant));
    let text = format!(
        "{who_text} to join {tenant} on Konstruct as a {role}.\n\n\
         Accept the invitation: {link}\n\n\
         The link works once and until {expires}. If you did not expect this invitation, you can \
         ignore this mail.\n",
        tenant = plain(tenant),
        role = i.role,
        link = i.link,
    );
    let html = page(
        &format!("Join {} on Konstruct", escape(tenant)),
        &[format!(
            "{who_html} to join <strong>{}</strong> on Konstruct as a {}.",
            escape(tenant),
            escape(i.role)
        )],
        "Accept the invitation",
        i.link,
        &format!(
            "The link works once and until {}. If you did not expect this invitation, you can ignore this mail.",
            escape(&expires)
        ),
    );
    Email {
        to: i.to.to_string(),
        subject,
        text,
        html,
    }
}

/// The password-reset mail.
pub fn password_reset(r: &PasswordReset<'_>) -> Email {
    let text = format!(
        "Someone asked to reset the password of your Konstruct account.\n\n\
         Choose a new password: {link}\n\n\
         The link works once, for {minutes} minutes. Setting a new password signs you out \
         everywhere else. If you did not ask for this, ignore this mail: your password stays as \
         it is.\n",
        link = r.link,
        minutes = r.minutes,
    );
    let html = page(
        "Reset your Konstruct password",
        &["Someone asked to reset the password of your Konstruct account.".to_string()],
        "Choose a new password",
        r.link,
        &format!(
            "The link works once, for {} minutes. Setting a new password signs you out everywhere \
             else. If you did not ask for this, ignore this mail: your password stays as it is.",
            r.minutes
        ),
    );
    Email {
        to: r.to.to_string(),
        subject: "Reset your Konstruct password".into(),
        text,
        html,
    }
}

/// What a hand-off mail says: which agent handed off, why, and where to answer. Never the
/// customer's words (a mailbox keeps them beyond anything the tenant can erase).
#[derive(Debug)]
pub struct Handoff<'a> {
    pub to: &'a str,
    pub tenant_name: &'a str,
    pub agent_name: &'a str,
    pub channel: &'a str,
    /// The reason in a sentence.
    pub why: &'a str,
    pub link: &'a str,
}

/// The mail members who opted in get when a conversation is handed off.
pub fn handoff(h: &Handoff<'_>) -> Email {
    let subject = format!(
        "{} handed a {} conversation to your team",
        plain(h.agent_name),
        plain(h.channel)
    );
    let text = format!(
        "{agent} handed a {channel} conversation in {tenant} to a person.\n\n\
         Why: {why}\n\n\
         Open it in the inbox: {link}\n\n\
         You get this mail because you asked to be told about hand-offs; turn it off in the inbox.\n",
        agent = plain(h.agent_name),
        channel = plain(h.channel),
        tenant = plain(h.tenant_name),
        why = plain(h.why),
        link = h.link,
    );
    let html = page(
        "A customer is waiting for a person",
        &[
            format!(
                "<strong>{}</strong> handed a {} conversation in <strong>{}</strong> to your team.",
                escape(h.agent_name),
                escape(h.channel),
                escape(h.tenant_name)
            ),
            format!("Why: {}", escape(h.why)),
        ],
        "Open the conversation",
        h.link,
        "You get this mail because you asked to be told about hand-offs; turn it off in the inbox.",
    );
    Email {
        to: h.to.to_string(),
        subject: one_line_subject(&subject),
        text,
        html,
    }
}

/// What a budget alert says.
#[derive(Debug, Clone)]
pub struct BudgetAlert<'a> {
    pub to: &'a str,
    pub tenant_name: &'a str,
    /// `None`: the tenant's budget; else the agent's name.
    pub agent_name: Option<&'a str>,
    pub threshold: u8,
    /// Amounts as people read them (`$41.20`).
    pub spent: &'a str,
    pub monthly: &'a str,
    /// What happens at 100 %, in a sentence.
    pub policy: &'a str,
    pub link: &'a str,
}

/// The mail a tenant's admins get when a budget crosses a threshold.
pub fn budget_alert(b: &BudgetAlert<'_>) -> Email {
    let whose = match b.agent_name {
        Some(agent) => format!("{}'s budget", plain(agent)),
        None => "The monthly AI budget".to_string(),
    };
    let subject = format!(
        "{whose} in {} has reached {} %",
        plain(b.tenant_name),
        b.threshold
    );
    let text = format!(
        "{whose} in {tenant} has reached {threshold} %: {spent} of {monthly} spent this month.\n\n\
         At 100 %: {policy}\n\n\
         See usage and change the budget: {link}\n\n\
         You get this mail because you are an admin of {tenant}.\n",
        tenant = plain(b.tenant_name),
        threshold = b.threshold,
        spent = b.spent,
        monthly = b.monthly,
        policy = plain(b.policy),
        link = b.link,
    );
    let html_whose = match b.agent_name {
        Some(agent) => format!("<strong>{}</strong>'s budget", escape(agent)),
        None => "The monthly AI budget".to_string(),
    };
    let html = page(
        &format!("Budget at {} %", b.threshold),
        &[
            format!(
                "{html_whose} in <strong>{}</strong> has reached {} %: {} of {} spent this month.",
                escape(b.tenant_name),
                b.threshold,
                escape(b.spent),
                escape(b.monthly)
            ),
            format!("At 100 %: {}", escape(b.policy)),
        ],
        "See usage",
        b.link,
        "You get this mail because you are an admin of this workspace.",
    );
    Email {
        to: b.to.to_string(),
        subject: one_line_subject(&subject),
        text,
        html,
    }
}

fn one_line_subject(subject: &str) -> String {
    plain(subject).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_people_chose_cannot_write_markup_into_the_mail() {
        let mail = invitation(&Invitation {
            to: "new@example.com",
            tenant_name: "Acme <script>alert(1)</script> & \"Co\"",
            inviter: Some("Eve <img src=x>"),
            role: "customer operator",
            link: "https://k.example.com/invitation#token=abc",
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        });
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(!mail.html.contains("<img"), "{}", mail.html);
        assert!(mail.html.contains("Acme &lt;script&gt;"));
        assert!(
            mail.html
                .contains("href=\"https://k.example.com/invitation#token=abc\"")
        );
        assert!(
            mail.text
                .contains("https://k.example.com/invitation#token=abc")
        );
        assert!(mail.text.contains("as a customer operator"));
        assert_eq!(
            mail.subject,
            "You're invited to Acme <script>alert(1)</script> & \"Co\" on Konstruct"
        );
    }

    #[test]
    fn the_reset_mail_says_how_long_its_link_works() {
        let mail = password_reset(&PasswordReset {
            to: "a@example.com",
            link: "https://k.example.com/reset-password#token=xyz",
            minutes: 60,
        });
        assert!(mail.text.contains("for 60 minutes"));
        assert!(mail.html.contains("#token=xyz"));
    }
}
