//! Credentials in URLs (`http://user:secret@host/...`) never reach a log line, the termination message or
//! `proa --check`: every URL proa shows goes through `redact`. Pure: no I/O.

/// `text` with the userinfo of every URL in it replaced by `***` (`http://***@host/quit`).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail.find(|c: char| "/?#\"' \t\n".contains(c)).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                rest = &tail[userinfo_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_hidden() {
        assert_eq!(redact("http://user:pass@127.0.0.1:15020/quit"), "http://***@127.0.0.1:15020/quit");
        assert_eq!(redact("http://a@b@host/x?u=http://c:d@e/"), "http://***@host/x?u=http://***@e/");
        assert_eq!(
            redact(r#"invalid --wait-http "https://u:p@h/r": use"#),
            r#"invalid --wait-http "https://***@h/r": use"#
        );
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for text in ["http://127.0.0.1:15020/quitquitquit", "no url here", "x://", "mailto:a@b", "http://h/p@q"] {
            assert_eq!(redact(text), text);
        }
    }
}
