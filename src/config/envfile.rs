//! The site's `.env`: its safety rules (SPEC §3) and its contents.
//!
//! systemd reads it as an `EnvironmentFile=` for the site's units; our own
//! programs (deploy, backup, restore) read it here, so the app, pg_dump and
//! manage.py must all see the same `DATABASE_URL`. `parse` therefore takes
//! only the syntax that systemd 252 (Debian 12) and 257 (Debian 13) read
//! alike, gives it their meaning, and refuses the rest with its line:
//! a variable that systemd silently drops or reads otherwise would make the
//! deploy and the backup disagree with gunicorn. The rules were read from
//! systemd's `src/basic/env-file.c`; `tests/it/envfile_corpus.rs` holds our
//! verdicts on a corpus and a model of that parser, and
//! `tests/e2e/envfile.sh` checks the corpus against systemd itself.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a `.env` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError(pub String);

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvFileError {}

/// Checks ownership and mode: `root:<group>`, not group- or world-writable,
/// not world-readable. `group` is the expected group id (None: not checked,
/// for test roots).
pub fn check_safe(path: &Path, gid: Option<u32>) -> Result<(), EnvFileError> {
    let meta = fs_err::symlink_metadata(path).map_err(|e| {
        EnvFileError(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{} is missing: create it with DATABASE_URL, REDIS_URL and the app's \
                 secrets (`sumctl new` writes a skeleton)",
                path.display()
            )
        } else {
            e.to_string()
        })
    })?;
    if !meta.file_type().is_file() {
        return Err(EnvFileError(format!(
            "{} is not a regular file (a symlink or directory is refused)",
            path.display()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(EnvFileError(format!(
            "{} is group- or world-writable (mode {mode:04o}); fix with `chmod 0640 {}`",
            path.display(),
            path.display()
        )));
    }
    if mode & 0o004 != 0 {
        return Err(EnvFileError(format!(
            "{} is world-readable (mode {mode:04o}) and holds secrets; fix with `chmod 0640 {}`",
            path.display(),
            path.display()
        )));
    }
    if let Some(gid) = gid {
        if meta.uid() != 0 || meta.gid() != gid {
            return Err(EnvFileError(format!(
                "{} must be owned by root and the site's group (uid 0, gid {gid}), not uid {} gid {}; \
                 fix with `chown root:<site group> {}`",
                path.display(),
                meta.uid(),
                meta.gid(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// A `.env`'s variables, in the order of their first assignment; a later
/// assignment of the same name replaces the value, as systemd does.
pub type Env = Vec<(String, String)>;

/// The longest `NAME=value` the kernel passes to a program (MAX_ARG_STRLEN,
/// 128 KiB with the terminating NUL): systemd cannot start a unit with more.
pub const MAX_ASSIGNMENT: usize = 128 * 1024 - 1;

/// Where a `.env`'s text is refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line of the offending character (of the opening quote, for
    /// a quote that is never closed).
    pub line: usize,
    pub kind: SyntaxErrorKind,
}

/// What is refused: text that systemd would not start the units with, that
/// systemd 252 (Debian 12) and 257 (Debian 13) read differently, or that
/// systemd reads otherwise than a person would (see `parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxErrorKind {
    NulByte,
    InvalidUtf8,
    /// U+FDD0..U+FDEF or U+xFFFE/U+xFFFF, which systemd's UTF-8 check refuses.
    Noncharacter(char),
    ByteOrderMark,
    ControlCharacter(char),
    /// A carriage return that is not followed by a line feed.
    LoneCarriageReturn,
    CarriageReturnInQuotes,
    MissingEquals,
    EmptyName,
    Export,
    InvalidName(String),
    CommentEndsWithBackslash,
    UnquotedBackslash,
    /// `#` or `;` after whitespace in an unquoted value.
    CommentAfterValue,
    UnterminatedQuote(char),
    TextAfterQuote,
    TooLong {
        name: String,
        bytes: usize,
    },
}

impl std::fmt::Display for SyntaxErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use SyntaxErrorKind::*;
        match self {
            NulByte => f.write_str("a NUL byte: systemd refuses the whole file"),
            InvalidUtf8 => f.write_str(
                "not valid UTF-8: systemd refuses the whole file when a name or value is not",
            ),
            Noncharacter(c) => write!(
                f,
                "the Unicode noncharacter U+{:04X}: systemd refuses the whole file when it is \
                 in a name or value",
                u32::from(*c)
            ),
            ByteOrderMark => f.write_str(
                "a byte-order mark (U+FEFF): systemd would read it as part of a name; \
                 save the file as UTF-8 without a BOM",
            ),
            ControlCharacter(c) => write!(
                f,
                "the control character U+{:04X}: only tabs and line ends are allowed",
                u32::from(*c)
            ),
            LoneCarriageReturn => f.write_str(
                "a carriage return that does not end a line: systemd ends the line there; \
                 use LF or CRLF line ends",
            ),
            CarriageReturnInQuotes => f.write_str(
                "a carriage return inside quotes: systemd keeps it in the value; \
                 use LF line ends",
            ),
            MissingEquals => f.write_str(
                "no `=`: systemd ignores the line; write NAME=value, or start a comment with #",
            ),
            EmptyName => f.write_str("no name before `=`: systemd ignores the line"),
            Export => f.write_str(
                "`export NAME=`: systemd reads `export NAME` as the name, which is invalid, \
                 and drops the variable; remove `export`",
            ),
            InvalidName(name) => write!(
                f,
                "`{}` is not a valid name (letters, digits and _, not starting with a digit): \
                 systemd drops the variable",
                name.chars().take(60).collect::<String>()
            ),
            CommentEndsWithBackslash => f.write_str(
                "a comment that ends with a backslash: systemd before 254 (Debian 12) continues \
                 the comment onto the next line, later versions do not; remove the backslash",
            ),
            UnquotedBackslash => f.write_str(
                "a backslash in an unquoted value: systemd drops it (and one at the end of the \
                 line joins the next line); put the value in single quotes",
            ),
            CommentAfterValue => f.write_str(
                "`#` or `;` after a space is no comment here: systemd keeps it in the value; \
                 put the comment on a line of its own, or quote the value",
            ),
            UnterminatedQuote(q) => write!(
                f,
                "the {q} opened here is never closed: systemd would take the rest of the file \
                 as the value"
            ),
            TextAfterQuote => f.write_str(
                "text after the closing quote: systemd joins it to the value, without the \
                 spaces between; quote the whole value",
            ),
            TooLong { name, bytes } => write!(
                f,
                "{name}=… is {bytes} bytes: the kernel refuses an environment entry of more \
                 than {MAX_ASSIGNMENT}"
            ),
        }
    }
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses a `.env` the way systemd's `EnvironmentFile=` does, or refuses it.
///
/// Accepted, with systemd's meaning (252 through 257 agree on all of it):
/// - `NAME=value` lines; NAME is letters, digits and `_`, not starting with a
///   digit; spaces and tabs around NAME, around `=` and at the end of the
///   line are dropped; a later NAME replaces an earlier one's value.
/// - An unquoted value is taken literally up to the end of the line, quotes
///   and `$` included (no expansion); empty values are allowed.
/// - `'…'`: literal, may span lines. `"…"`: may span lines; `\"`, `\\`,
///   `` \` `` and `\$` stand for the character, a backslash before a line end
///   joins the lines, a backslash before anything else stays.
/// - Empty lines, and comment lines whose first non-blank character is `#`
///   or `;`; LF or CRLF line ends; a last line without a line end.
///
/// Refused (`SyntaxErrorKind`): a NUL byte, invalid UTF-8, Unicode
/// noncharacters, a byte-order mark, control characters other than tab,
/// a carriage return other than in a CRLF outside quotes, a line without
/// `=`, `export`, an invalid name, a comment ending with a backslash, a
/// backslash in an unquoted value, ` #` or ` ;` in an unquoted value, a
/// quote that is never closed, anything but blanks after a closing quote,
/// and an entry longer than `MAX_ASSIGNMENT`.
pub fn parse(bytes: &[u8]) -> Result<Env, SyntaxError> {
    let text = check_characters(bytes)?;
    let mut p = Parser {
        chars: text.chars().peekable(),
        line: 1,
    };
    let mut env = Env::new();
    let mut index = std::collections::HashMap::new();
    loop {
        p.skip_blanks();
        match p.peek() {
            None => break,
            Some('\n' | '\r') => p.end_of_line(),
            Some('#' | ';') => p.comment()?,
            Some(_) => {
                let line = p.line;
                let (name, value) = p.assignment()?;
                let bytes = name.len() + 1 + value.len();
                if bytes > MAX_ASSIGNMENT {
                    return Err(SyntaxError {
                        line,
                        kind: SyntaxErrorKind::TooLong { name, bytes },
                    });
                }
                match index.get(&name) {
                    Some(&i) => env[i] = (name, value),
                    None => {
                        index.insert(name.clone(), env.len());
                        env.push((name, value));
                    }
                }
            }
        }
    }
    Ok(env)
}

/// The whole-file rules: UTF-8 as systemd checks it, no NUL, no control
/// characters but tab and line ends, CR only before LF.
fn check_characters(bytes: &[u8]) -> Result<&str, SyntaxError> {
    let line_at = |offset: usize| 1 + bytes.iter().take(offset).filter(|&&b| b == b'\n').count();
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(SyntaxError {
            line: line_at(at),
            kind: SyntaxErrorKind::NulByte,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| SyntaxError {
        line: line_at(e.valid_up_to()),
        kind: SyntaxErrorKind::InvalidUtf8,
    })?;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let kind = match c {
            '\n' => {
                line += 1;
                continue;
            }
            '\t' => continue,
            '\r' if chars.peek() == Some(&'\n') => continue,
            '\r' => SyntaxErrorKind::LoneCarriageReturn,
            '\u{feff}' => SyntaxErrorKind::ByteOrderMark,
            c if c.is_control() => SyntaxErrorKind::ControlCharacter(c),
            c if is_noncharacter(c) => SyntaxErrorKind::Noncharacter(c),
            _ => continue,
        };
        return Err(SyntaxError { line, kind });
    }
    Ok(text)
}

fn is_noncharacter(c: char) -> bool {
    let u = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A cursor over the text that counts lines. Once `check_characters` has
/// passed, `\r` only ever comes right before `\n`.
struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }

    fn at_line_end(&mut self) -> bool {
        matches!(self.peek(), None | Some('\n' | '\r'))
    }

    /// The next character of the current line (None at its end, which is
    /// left for `end_of_line`).
    fn line_char(&mut self) -> Option<char> {
        if self.at_line_end() {
            None
        } else {
            self.bump()
        }
    }

    /// Consumes `\n` or `\r\n`, if there.
    fn end_of_line(&mut self) {
        if self.peek() == Some('\r') {
            self.bump();
        }
        if self.peek() == Some('\n') {
            self.bump();
        }
    }

    /// Skips spaces and tabs; says whether there were any.
    fn skip_blanks(&mut self) -> bool {
        let mut skipped = false;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
            skipped = true;
        }
        skipped
    }

    fn error(&self, kind: SyntaxErrorKind) -> SyntaxError {
        SyntaxError {
            line: self.line,
            kind,
        }
    }

    fn comment(&mut self) -> Result<(), SyntaxError> {
        let mut last = None;
        while let Some(c) = self.line_char() {
            last = Some(c);
        }
        if last == Some('\\') {
            return Err(self.error(SyntaxErrorKind::CommentEndsWithBackslash));
        }
        self.end_of_line();
        Ok(())
    }

    fn assignment(&mut self) -> Result<(String, String), SyntaxError> {
        let mut raw = String::new();
        loop {
            match self.line_char() {
                None => return Err(self.error(SyntaxErrorKind::MissingEquals)),
                Some('=') => break,
                Some(c) => raw.push(c),
            }
        }
        let name = raw.trim_end_matches([' ', '\t']);
        if name.is_empty() {
            return Err(self.error(SyntaxErrorKind::EmptyName));
        }
        if name
            .strip_prefix("export")
            .is_some_and(|rest| rest.starts_with([' ', '\t']))
        {
            return Err(self.error(SyntaxErrorKind::Export));
        }
        if !is_valid_name(name) {
            return Err(self.error(SyntaxErrorKind::InvalidName(name.to_string())));
        }
        let name = name.to_string();
        let blank_before = self.skip_blanks();
        let value = match self.peek() {
            Some(q @ ('\'' | '"')) => {
                let value = self.quoted(q)?;
                self.skip_blanks();
                if !self.at_line_end() {
                    return Err(self.error(SyntaxErrorKind::TextAfterQuote));
                }
                value
            }
            _ => self.unquoted(blank_before)?,
        };
        self.end_of_line();
        Ok((name, value))
    }

    fn unquoted(&mut self, mut after_blank: bool) -> Result<String, SyntaxError> {
        let mut value = String::new();
        while let Some(c) = self.line_char() {
            match c {
                '\\' => return Err(self.error(SyntaxErrorKind::UnquotedBackslash)),
                '#' | ';' if after_blank => {
                    return Err(self.error(SyntaxErrorKind::CommentAfterValue))
                }
                _ => {}
            }
            after_blank = matches!(c, ' ' | '\t');
            value.push(c);
        }
        Ok(value.trim_end_matches([' ', '\t']).to_string())
    }

    /// A value in `q` quotes, from the opening quote to the closing one.
    fn quoted(&mut self, q: char) -> Result<String, SyntaxError> {
        let opened = self.line;
        let unterminated = SyntaxError {
            line: opened,
            kind: SyntaxErrorKind::UnterminatedQuote(q),
        };
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated),
                Some('\r') => return Err(self.error(SyntaxErrorKind::CarriageReturnInQuotes)),
                Some(c) if c == q => return Ok(value),
                Some('\\') if q == '"' => match self.bump() {
                    None => return Err(unterminated),
                    Some('\r') => return Err(self.error(SyntaxErrorKind::CarriageReturnInQuotes)),
                    Some('\n') => {}
                    Some(c @ ('"' | '\\' | '`' | '$')) => value.push(c),
                    Some(c) => {
                        value.push('\\');
                        value.push(c);
                    }
                },
                Some(c) => value.push(c),
            }
        }
    }
}

/// Reads and parses a `.env` after checking it is safe.
pub fn read(path: &Path, gid: Option<u32>) -> Result<Env, EnvFileError> {
    check_safe(path, gid)?;
    let bytes = fs_err::read(path).map_err(|e| EnvFileError(e.to_string()))?;
    parse(&bytes).map_err(|e| EnvFileError(format!("{}:{}: {}", path.display(), e.line, e.kind)))
}

/// The value of `key`, or an error saying which file lacks it.
pub fn get<'a>(
    env: &'a [(String, String)],
    key: &str,
    path: &Path,
) -> Result<&'a str, EnvFileError> {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| EnvFileError(format!("{} has no {key}= line", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn vars(text: &str) -> Env {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn refused(text: &str) -> SyntaxError {
        parse(text.as_bytes()).expect_err(text)
    }

    fn pairs(list: &[(&str, &str)]) -> Env {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_environment_file_syntax() {
        let env = vars(
            "# comment\n; other\nA=1\nB = two words \nC=\"quoted \\\"x\\\"\"\nD='single'\n\
             E=\nA=override\r\nF='multi\nline'\nG=$HOME it's",
        );
        assert_eq!(
            env,
            pairs(&[
                ("A", "override"),
                ("B", "two words"),
                ("C", "quoted \"x\""),
                ("D", "single"),
                ("E", ""),
                ("F", "multi\nline"),
                ("G", "$HOME it's"),
            ])
        );
    }

    #[test]
    fn double_quotes_unescape_only_what_the_shell_does() {
        assert_eq!(
            vars("A=\"\\\" \\\\ \\` \\$ \\n \\' one\\\ntwo\"\n"),
            pairs(&[("A", "\" \\ ` $ \\n \\' onetwo")])
        );
    }

    #[test]
    fn refusals_name_the_line() {
        for (text, line, kind) in [
            ("A=1\nexport B=2\n", 2, SyntaxErrorKind::Export),
            ("A=1\n\nB\n", 3, SyntaxErrorKind::MissingEquals),
            ("# c\\\nA=1\n", 1, SyntaxErrorKind::CommentEndsWithBackslash),
            ("A=1 # c\n", 1, SyntaxErrorKind::CommentAfterValue),
            ("A= ;c\n", 1, SyntaxErrorKind::CommentAfterValue),
            ("A=C:\\x\n", 1, SyntaxErrorKind::UnquotedBackslash),
            ("A='x'y\n", 1, SyntaxErrorKind::TextAfterQuote),
            (
                "A=1\nB=\"x\n\ny",
                2,
                SyntaxErrorKind::UnterminatedQuote('"'),
            ),
            ("A='x\r\n'", 1, SyntaxErrorKind::CarriageReturnInQuotes),
            ("A=1\rB=2\n", 1, SyntaxErrorKind::LoneCarriageReturn),
            ("=1\n", 1, SyntaxErrorKind::EmptyName),
            ("\u{feff}A=1\n", 1, SyntaxErrorKind::ByteOrderMark),
            ("A=\u{fffe}\n", 1, SyntaxErrorKind::Noncharacter('\u{fffe}')),
            ("A=\x1b[0m\n", 1, SyntaxErrorKind::ControlCharacter('\x1b')),
            (
                "A=1\nA-B=2\n",
                2,
                SyntaxErrorKind::InvalidName("A-B".to_string()),
            ),
        ] {
            assert_eq!(refused(text), SyntaxError { line, kind }, "{text:?}");
        }
        let e = parse(b"A=1\n\nB=\xff\n").unwrap_err();
        assert_eq!((e.line, e.kind), (3, SyntaxErrorKind::InvalidUtf8));
        let e = parse(b"A=1\nB=\0\n").unwrap_err();
        assert_eq!((e.line, e.kind), (2, SyntaxErrorKind::NulByte));
    }

    #[test]
    fn an_entry_longer_than_the_kernel_passes_is_refused() {
        let fits = format!("A={}", "x".repeat(MAX_ASSIGNMENT - 2));
        assert_eq!(vars(&fits)[0].1.len(), MAX_ASSIGNMENT - 2);
        let e = refused(&format!("{fits}x\n"));
        assert!(
            matches!(e.kind, SyntaxErrorKind::TooLong { bytes, .. } if bytes == MAX_ASSIGNMENT + 1)
        );
    }

    #[test]
    fn read_reports_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        fs_err::write(&p, "A=1\nexport B=2\n").unwrap();
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read(&p, None).unwrap_err().0;
        assert!(
            e.starts_with(&format!("{}:2: `export NAME=`", p.display())),
            "{e}"
        );
    }

    #[test]
    fn unsafe_modes_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        assert!(check_safe(&p, None).unwrap_err().0.contains("is missing"));
        fs_err::write(&p, "A=1\n").unwrap();
        for (mode, needle) in [
            (0o644, "world-readable"),
            (0o660, "writable"),
            (0o602, "writable"),
        ] {
            fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = check_safe(&p, None).unwrap_err().0;
            assert!(
                e.contains(needle) && e.contains("chmod 0640"),
                "{mode:o}: {e}"
            );
        }
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(check_safe(&p, None), Ok(()));
        let wrong_gid = fs_err::metadata(&p).unwrap().gid() + 1;
        assert!(check_safe(&p, Some(wrong_gid))
            .unwrap_err()
            .0
            .contains("must be owned by root"));
    }
}
