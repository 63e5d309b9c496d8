//! The expiry (notAfter) of an X.509 certificate, read from its PEM or DER
//! form without a certificate library. Caddy keeps each site's certificate
//! as `certificates/<issuer>/<domain>/<domain>.crt` under its data
//! directory: a PEM chain, the leaf first, then the intermediates. The leaf
//! is the first block, and its notAfter is all we read.
//!
//! Only the path to the validity is walked (RFC 5280, 4.1):
//!
//! ```text
//! Certificate ::= SEQUENCE {
//!     tbsCertificate SEQUENCE {
//!         version [0] EXPLICIT OPTIONAL, serialNumber INTEGER,
//!         signature SEQUENCE, issuer SEQUENCE,
//!         validity SEQUENCE { notBefore Time, notAfter Time }, ... },
//!     ... }
//! ```
//!
//! Lengths are definite, short form or long form with 1 to 4 length bytes
//! (a long form longer than needed is read too). A GeneralizedTime before
//! 2050, which RFC 5280 would write as a UTCTime, is read as what it says.
//! Every element must fit inside its parent, and every failure is an `Err`
//! that says what was wrong and at which byte, never a panic.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

const INTEGER: u8 = 0x02;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
/// `[0]`, constructed, context-specific: the explicit version.
const VERSION: u8 = 0xA0;

/// The notAfter of the first certificate in a PEM text, as Unix seconds.
pub fn not_after_pem(pem: &str) -> Result<i64, String> {
    let start = pem
        .find(BEGIN)
        .ok_or_else(|| format!("no PEM certificate: no {BEGIN} line"))?;
    let body = pem.get(start + BEGIN.len()..).unwrap_or_default();
    let end = body
        .find(END)
        .ok_or_else(|| format!("unfinished PEM certificate: no {END} line after {BEGIN}"))?;
    let base64: String = body
        .get(..end)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if base64.is_empty() {
        return Err("empty PEM certificate: nothing between its BEGIN and END lines".to_string());
    }
    let der = B64
        .decode(base64.as_bytes())
        .map_err(|e| format!("bad PEM certificate: its base64 does not decode: {e}"))?;
    not_after_der(&der)
}

/// The notAfter of one DER-encoded X.509 certificate, as Unix seconds.
pub fn not_after_der(der: &[u8]) -> Result<i64, String> {
    walk(der).map_err(|e| format!("not a certificate: {e}"))
}

fn walk(der: &[u8]) -> Result<i64, String> {
    let mut whole = Der { bytes: der, at: 0 };
    let (_, mut cert) = whole.take(&[SEQUENCE], "a SEQUENCE (the certificate)")?;
    whole.finish("the certificate")?;
    let (_, mut tbs) = cert.take(&[SEQUENCE], "a SEQUENCE (tbsCertificate)")?;
    if tbs.peek() == Some(VERSION) {
        tbs.take(&[VERSION], "[0] (version)")?;
    }
    tbs.take(&[INTEGER], "an INTEGER (serialNumber)")?;
    tbs.take(&[SEQUENCE], "a SEQUENCE (signature algorithm)")?;
    tbs.take(&[SEQUENCE], "a SEQUENCE (issuer)")?;
    let (_, mut validity) = tbs.take(&[SEQUENCE], "a SEQUENCE (validity)")?;
    time(&mut validity, "notBefore")?;
    let not_after = time(&mut validity, "notAfter")?;
    validity.finish("notAfter, inside the validity")?;
    Ok(not_after)
}

/// A run of DER bytes, and where it starts in the whole certificate (for
/// messages).
#[derive(Clone, Copy)]
struct Der<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Der<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.first().copied()
    }

    /// Takes the next element off the front, if its tag is one of `tags`:
    /// its tag and its content. `what` names the element for messages.
    fn take(&mut self, tags: &[u8], what: &str) -> Result<(u8, Der<'a>), String> {
        let at = self.at;
        let Some((&tag, rest)) = self.bytes.split_first() else {
            return Err(format!(
                "expected {what} at byte {at}, found the end of the data"
            ));
        };
        if !tags.contains(&tag) {
            return Err(format!(
                "expected {what} at byte {at}, found {}",
                tag_name(tag)
            ));
        }
        let (len, rest) = length(rest, at, what)?;
        let header = self.bytes.len() - rest.len();
        let Some((content, after)) = rest.split_at_checked(len) else {
            return Err(format!(
                "{what} at byte {at}: its length, {len} bytes, goes past the end of the data \
                 ({} bytes left)",
                rest.len()
            ));
        };
        let content = Der {
            bytes: content,
            at: at + header,
        };
        self.bytes = after;
        self.at = at + header + len;
        Ok((tag, content))
    }

    /// Refuses bytes left over after the last element read.
    fn finish(&self, after: &str) -> Result<(), String> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(format!(
                "{n} stray bytes after {after}, at byte {}",
                self.at
            )),
        }
    }
}

/// Reads a definite length from the front of `bytes` (just after the tag of
/// the element at byte `at`): the length and the bytes after it.
fn length<'a>(bytes: &'a [u8], at: usize, what: &str) -> Result<(usize, &'a [u8]), String> {
    let Some((&first, rest)) = bytes.split_first() else {
        return Err(format!(
            "{what} at byte {at}: the data ends before its length"
        ));
    };
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 {
        return Err(format!(
            "{what} at byte {at}: indefinite length (0x80), which DER does not allow"
        ));
    }
    if count > 4 {
        return Err(format!(
            "{what} at byte {at}: a length of {count} length bytes (0x{first:02x}); at most 4 \
             are supported"
        ));
    }
    let Some((digits, rest)) = rest.split_at_checked(count) else {
        return Err(format!(
            "{what} at byte {at}: the data ends inside its {count} length bytes"
        ));
    };
    let len = digits
        .iter()
        .fold(0u64, |len, &b| (len << 8) | u64::from(b));
    // A length that does not fit a usize cannot fit the data either.
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    Ok((len, rest))
}

fn tag_name(tag: u8) -> String {
    let name = match tag {
        INTEGER => " (INTEGER)",
        UTC_TIME => " (UTCTime)",
        GENERALIZED_TIME => " (GeneralizedTime)",
        SEQUENCE => " (SEQUENCE)",
        VERSION => " ([0])",
        0x31 => " (SET)",
        0x03 => " (BIT STRING)",
        0x04 => " (OCTET STRING)",
        0x05 => " (NULL)",
        0x06 => " (OBJECT IDENTIFIER)",
        _ => "",
    };
    format!("tag 0x{tag:02x}{name}")
}

/// Takes one Time (UTCTime or GeneralizedTime) off the front of `der` and
/// reads it as Unix seconds; `what` is `notBefore` or `notAfter`.
fn time(der: &mut Der, what: &str) -> Result<i64, String> {
    let (tag, content) = der.take(
        &[UTC_TIME, GENERALIZED_TIME],
        &format!("a UTCTime or GeneralizedTime ({what})"),
    )?;
    let at = content.at;
    read_time(tag, content.bytes).map_err(|e| {
        format!(
            "{what} at byte {at}: {e} in \"{}\"",
            content.bytes.escape_ascii()
        )
    })
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), the
/// only forms RFC 5280 (4.1.2.5) allows, as Unix seconds.
fn read_time(tag: u8, text: &[u8]) -> Result<i64, String> {
    let (kind, form, year_digits) = if tag == UTC_TIME {
        ("UTCTime", "YYMMDDHHMMSSZ", 2)
    } else {
        ("GeneralizedTime", "YYYYMMDDHHMMSSZ", 4)
    };
    if text.len() != form.len() {
        return Err(format!(
            "a {kind} of {} bytes; it must be {} bytes, {form}",
            text.len(),
            form.len()
        ));
    }
    let Some((&b'Z', digits)) = text.split_last() else {
        return Err(format!("a {kind} that does not end in Z (UTC), not {form}"));
    };
    if let Some(i) = digits.iter().position(|b| !b.is_ascii_digit()) {
        return Err(format!(
            "a {kind} with a non-digit at its byte {i}, not {form}"
        ));
    }
    let year = i64::from(number(digits, 0, year_digits));
    // RFC 5280: a UTCTime's YY of 50 to 99 is 19YY, of 00 to 49 is 20YY.
    let year = match (tag, year) {
        (UTC_TIME, 50..) => 1900 + year,
        (UTC_TIME, _) => 2000 + year,
        _ => year,
    };
    let field = |i: usize| number(digits, year_digits + 2 * i, 2);
    let (month, day) = (field(0), field(1));
    let (hour, minute, second) = (field(2), field(3), field(4));
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} is out of range (01 to 12)"));
    }
    let last = days_in_month(year, month);
    if !(1..=last).contains(&day) {
        return Err(format!(
            "day {day:02} is out of range for {year:04}-{month:02} (01 to {last})"
        ));
    }
    for (name, value, max) in [
        ("hour", hour, 23),
        ("minute", minute, 59),
        ("second", second, 59),
    ] {
        if value > max {
            return Err(format!("{name} {value:02} is out of range (00 to {max})"));
        }
    }
    let seconds = i64::from(hour * 3600 + minute * 60 + second);
    Ok(crate::system::timefmt::days_from_civil(year, month, day) * 86_400 + seconds)
}

/// The decimal number of `count` ASCII digits of `digits` from `from`.
fn number(digits: &[u8], from: usize, count: usize) -> u32 {
    digits
        .iter()
        .skip(from)
        .take(count)
        .fold(0, |n, &d| n * 10 + u32::from(d.wrapping_sub(b'0')))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::timefmt;
    use proptest::prelude::*;
    use std::process::Command;

    /// A real certificate, made once with `openssl req -x509 -newkey ec
    /// -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=acme.localhost
    /// -days 90`. `openssl x509 -enddate -noout` says
    /// `notAfter=Mar  6 05:11:57 2027 GMT`.
    const FIXED_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS2gAwIBAgIUKPH96dlpeFNSciZgY0hrYLAv8RAwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOYWNtZS5sb2NhbGhvc3QwHhcNMjYxMjA2MDUxMTU3WhcNMjcw
MzA2MDUxMTU3WjAZMRcwFQYDVQQDDA5hY21lLmxvY2FsaG9zdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABPGaCp4kmlpb5Ls2qHsfRN4X5tfqzWVmEJlyYD0ZYToS
OPYhioSNtrhJNayhp7yVHZvhpzcSDjJQ14aNsuN3HbWjUzBRMB0GA1UdDgQWBBRB
KekMzy7TPaxt1ked6yCi0wYmhTAfBgNVHSMEGDAWgBRBKekMzy7TPaxt1ked6yCi
0wYmhTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDY6kKTgi9o
g8uLWlr0v85Ix/AuuWNdeFysGv5bNu2H+gIhAIS7RdHW3BBi65E8oB7cfZkRxy2h
Y1P31ywfnFWgijYG
-----END CERTIFICATE-----
";
    /// `date -u -d 'Mar  6 05:11:57 2027 GMT' +%s`
    const FIXED_NOT_AFTER: i64 = 1_804_309_917;
    /// Where the validity of FIXED_PEM ends (`openssl asn1parse`: the
    /// subject starts at byte 106).
    const FIXED_VALIDITY_END: usize = 106;

    /// 1950-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range of a
    /// certificate's times.
    const FIRST: i64 = -631_152_000;
    const LAST: i64 = 253_402_300_799;

    fn fixed_der() -> Vec<u8> {
        let body: String = FIXED_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        B64.decode(body).unwrap()
    }

    fn pem(der: &[u8]) -> String {
        let text = B64.encode(der);
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!("{BEGIN}\n{}\n{END}\n", lines.join("\n"))
    }

    // ---- building certificates ----------------------------------------

    /// A DER length: the short form if `wide` is 0 and it fits, else the
    /// long form with at least `wide` (at most 4) length bytes.
    fn der_len(n: usize, wide: usize) -> Vec<u8> {
        let be = u32::try_from(n).unwrap().to_be_bytes();
        if wide == 0 && n < 0x80 {
            return vec![be[3]];
        }
        let needed = be.iter().skip_while(|b| **b == 0).count();
        let k = needed.max(wide).max(1);
        let mut out = vec![0x80 | k as u8];
        out.extend_from_slice(&be[4 - k..]);
        out
    }

    fn tlv(tag: u8, content: &[u8], wide: usize) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend(der_len(content.len(), wide));
        out.extend_from_slice(content);
        out
    }

    /// The civil parts of a Unix time from 1950 on, through
    /// `timefmt::parts` shifted by one Gregorian cycle of 400 years.
    fn civil(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
        const CYCLE: i64 = 146_097 * 86_400;
        let (y, mo, d, h, mi, s) = timefmt::parts(u64::try_from(unix + CYCLE).unwrap());
        (y - 400, mo, d, h, mi, s)
    }

    /// A Time as RFC 5280 wants it: UTCTime through 2049, GeneralizedTime
    /// after.
    fn time_tlv(unix: i64, wide: usize) -> Vec<u8> {
        let (y, mo, d, h, mi, s) = civil(unix);
        let rest = format!("{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        if (1950..=2049).contains(&y) {
            tlv(UTC_TIME, format!("{:02}{rest}", y % 100).as_bytes(), wide)
        } else {
            tlv(GENERALIZED_TIME, format!("{y:04}{rest}").as_bytes(), wide)
        }
    }

    /// A Name with one common name of `pad` bytes.
    fn name(pad: usize, wide: usize) -> Vec<u8> {
        let cn_oid = tlv(0x06, &[0x55, 0x04, 0x03], wide);
        let value = tlv(0x0c, &vec![b'a'; pad], wide);
        let atv = tlv(SEQUENCE, &[cn_oid, value].concat(), wide);
        tlv(SEQUENCE, &tlv(0x31, &atv, wide), wide)
    }

    /// A minimal certificate: `wide` forces long-form lengths (see
    /// `der_len`), `pad` sizes the issuer. Returns it and where its
    /// validity ends.
    fn build(
        not_before: i64,
        not_after: i64,
        pad: usize,
        wide: usize,
        version: bool,
    ) -> (Vec<u8>, usize) {
        let times = [time_tlv(not_before, wide), time_tlv(not_after, wide)].concat();
        with_validity(&times, pad, wide, version)
    }

    /// A certificate around the content of its validity.
    fn with_validity(times: &[u8], pad: usize, wide: usize, version: bool) -> (Vec<u8>, usize) {
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let alg = tlv(SEQUENCE, &tlv(0x06, &ecdsa_sha256, wide), wide);
        let mut head = Vec::new();
        if version {
            head.extend(tlv(VERSION, &tlv(INTEGER, &[2], wide), wide));
        }
        head.extend(tlv(INTEGER, &[0x01, 0x23, 0x45], wide));
        head.extend(&alg);
        head.extend(name(pad, wide));
        head.extend(tlv(SEQUENCE, times, wide));
        let subject = name(3, wide);
        let tbs = tlv(SEQUENCE, &[head.as_slice(), &subject].concat(), wide);
        let signature = tlv(0x03, &[0, 1, 2, 3], wide);
        let cert = tlv(SEQUENCE, &[tbs.as_slice(), &alg, &signature].concat(), wide);
        let end = header_len(&cert) + header_len(&tbs) + head.len();
        (cert, end)
    }

    /// A certificate whose notAfter is `tag` around `text`.
    fn with_not_after(tag: u8, text: &str) -> Vec<u8> {
        let times = [time_tlv(0, 0), tlv(tag, text.as_bytes(), 0)].concat();
        with_validity(&times, 5, 0, true).0
    }

    fn header_len(tlv: &[u8]) -> usize {
        match tlv[1] {
            b if b < 0x80 => 2,
            b => 2 + usize::from(b & 0x7f),
        }
    }

    fn err(der: &[u8]) -> String {
        match not_after_der(der) {
            Ok(t) => panic!("expected an error, got {t}"),
            Err(e) => e,
        }
    }

    fn assert_err(der: &[u8], wanted: &str) {
        let e = err(der);
        assert!(e.contains(wanted), "{e:?} does not say {wanted:?}");
        assert!(e.starts_with("not a certificate: "), "{e}");
    }

    // ---- a fixed real certificate ---------------------------------------

    #[test]
    fn fixed_certificate_gives_the_end_date_openssl_shows() {
        assert_eq!(not_after_pem(FIXED_PEM), Ok(FIXED_NOT_AFTER));
        assert_eq!(not_after_der(&fixed_der()), Ok(FIXED_NOT_AFTER));
        assert_eq!(
            timefmt::iso_utc(FIXED_NOT_AFTER as u64),
            "2027-03-06T05:11:57Z"
        );
    }

    #[test]
    fn pem_may_have_text_around_crlf_and_indented_lines() {
        let crlf = FIXED_PEM.replace('\n', "\r\n");
        let indented = FIXED_PEM.replace('\n', "\n   \t");
        let around = format!("subject=CN = acme.localhost\n\n{FIXED_PEM}\ntrailing words\n");
        for text in [crlf, indented, around] {
            assert_eq!(not_after_pem(&text), Ok(FIXED_NOT_AFTER), "{text}");
        }
    }

    #[test]
    fn a_chain_gives_its_first_certificate() {
        let other = 2_000_000_000;
        let intermediate = pem(&build(0, other, 40, 0, true).0);
        assert_eq!(
            not_after_pem(&format!("{FIXED_PEM}{intermediate}")),
            Ok(FIXED_NOT_AFTER)
        );
        assert_eq!(
            not_after_pem(&format!("{intermediate}{FIXED_PEM}")),
            Ok(other)
        );
    }

    #[test]
    fn pem_errors_say_what_is_missing() {
        let cases = [
            ("", "no -----BEGIN CERTIFICATE----- line"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no -----BEGIN CERTIFICATE----- line"),
            ("-----BEGIN CERTIFICATE-----\nMIIB\n", "no -----END CERTIFICATE----- line"),
            ("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n", "empty PEM certificate"),
            ("-----BEGIN CERTIFICATE-----\nMII*B\n-----END CERTIFICATE-----\n", "base64 does not decode"),
            ("-----BEGIN CERTIFICATE-----\nBAAA\n-----END CERTIFICATE-----\n", "not a certificate: expected a SEQUENCE (the certificate) at byte 0, found tag 0x04 (OCTET STRING)"),
        ];
        for (text, wanted) in cases {
            let e = not_after_pem(text).unwrap_err();
            assert!(
                e.contains(wanted),
                "{text:?}: {e:?} does not say {wanted:?}"
            );
        }
    }

    // ---- times ------------------------------------------------------------

    #[test]
    fn utc_time_years_50_to_99_are_19xx_and_00_to_49_are_20xx() {
        let cases = [
            (UTC_TIME, "500101000000Z", FIRST),
            (UTC_TIME, "691231235959Z", -1),
            (UTC_TIME, "700101000000Z", 0),
            (UTC_TIME, "991231235959Z", 946_684_799),
            (UTC_TIME, "000101000000Z", 946_684_800),
            (UTC_TIME, "491231235959Z", UTC_LAST),
            (GENERALIZED_TIME, "20500101000000Z", 2_524_608_000),
            (GENERALIZED_TIME, "19491231235959Z", FIRST - 1),
            (GENERALIZED_TIME, "99991231235959Z", LAST),
            (GENERALIZED_TIME, "00000101000000Z", -62_167_219_200),
        ];
        for (tag, text, unix) in cases {
            assert_eq!(
                not_after_der(&with_not_after(tag, text)),
                Ok(unix),
                "{text}"
            );
        }
    }

    #[test]
    fn leap_days_exist_only_in_leap_years() {
        let ok = [
            (UTC_TIME, "000229000000Z", 951_782_400),
            (UTC_TIME, "240229120000Z", 1_709_208_000),
            (GENERALIZED_TIME, "24000229000000Z", 13_574_563_200),
        ];
        for (tag, text, unix) in ok {
            assert_eq!(
                not_after_der(&with_not_after(tag, text)),
                Ok(unix),
                "{text}"
            );
        }
        for (tag, text) in [
            (UTC_TIME, "230229000000Z"),
            (GENERALIZED_TIME, "21000229000000Z"),
        ] {
            assert_err(&with_not_after(tag, text), "day 29 is out of range");
        }
    }

    #[test]
    fn bad_times_say_what_is_wrong() {
        let cases = [
            (
                UTC_TIME,
                "2703060511Z",
                "a UTCTime of 11 bytes; it must be 13 bytes",
            ),
            (UTC_TIME, "270306051157+0100", "a UTCTime of 17 bytes"),
            (
                GENERALIZED_TIME,
                "270306051157Z",
                "a GeneralizedTime of 13 bytes; it must be 15",
            ),
            (
                GENERALIZED_TIME,
                "20270306051157.5",
                "a GeneralizedTime of 16 bytes",
            ),
            (UTC_TIME, "2703060511570", "does not end in Z"),
            (UTC_TIME, "27030605115 Z", "a non-digit at its byte 11"),
            (UTC_TIME, "27-306051157Z", "a non-digit at its byte 2"),
            (
                GENERALIZED_TIME,
                "+0270306051157Z",
                "a non-digit at its byte 0",
            ),
            (
                UTC_TIME,
                "271306051157Z",
                "month 13 is out of range (01 to 12)",
            ),
            (UTC_TIME, "270006051157Z", "month 00 is out of range"),
            (
                UTC_TIME,
                "270431051157Z",
                "day 31 is out of range for 2027-04 (01 to 30)",
            ),
            (UTC_TIME, "270300051157Z", "day 00 is out of range"),
            (
                UTC_TIME,
                "270306241157Z",
                "hour 24 is out of range (00 to 23)",
            ),
            (
                UTC_TIME,
                "270306056057Z",
                "minute 60 is out of range (00 to 59)",
            ),
            (
                UTC_TIME,
                "270306051160Z",
                "second 60 is out of range (00 to 59)",
            ),
        ];
        for (tag, text, wanted) in cases {
            let der = with_not_after(tag, text);
            assert_err(&der, wanted);
            assert_err(&der, "notAfter at byte");
        }
        let der = with_not_after(0x13, "270306051157Z");
        assert_err(
            &der,
            "expected a UTCTime or GeneralizedTime (notAfter) at byte",
        );
        assert_err(&der, "found tag 0x13");
    }

    // ---- structure ----------------------------------------------------------

    #[test]
    fn bad_structure_says_what_and_where() {
        let (good, _) = build(0, 1, 10, 0, true);
        let mut wrong_outer = good.clone();
        wrong_outer[0] = 0x31;
        let mut trailing = good.clone();
        trailing.extend([0, 0]);
        let mut long_length = good.clone();
        long_length.splice(1..2, [0x85, 0, 0, 0, 0, 0x10]);
        let cases: [(&[u8], &str); 9] = [
            (
                &[],
                "expected a SEQUENCE (the certificate) at byte 0, found the end of the data",
            ),
            (
                &wrong_outer,
                "expected a SEQUENCE (the certificate) at byte 0, found tag 0x31 (SET)",
            ),
            (&[0x30], "the data ends before its length"),
            (
                &[0x30, 0x80, 0x30, 0x80, 0, 0, 0, 0],
                "indefinite length (0x80)",
            ),
            (&long_length, "a length of 5 length bytes (0x85)"),
            (
                &[0x30, 0x82, 0x01],
                "the data ends inside its 2 length bytes",
            ),
            (
                &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0],
                "its length, 4294967295 bytes, goes past the end of the data (1 bytes left)",
            ),
            (&trailing, "2 stray bytes after the certificate"),
            (
                &[0x30, 0x00],
                "expected a SEQUENCE (tbsCertificate) at byte 2, found the end",
            ),
        ];
        for (der, wanted) in cases {
            assert_err(der, wanted);
        }
        // A tbsCertificate that starts with its issuer: no serial number.
        let tbs = tlv(SEQUENCE, &name(1, 0), 0);
        assert_err(
            &tlv(SEQUENCE, &tbs, 0),
            "expected an INTEGER (serialNumber) at byte 4, found tag 0x30 (SEQUENCE)",
        );
        // A third time in the validity.
        let times = [time_tlv(0, 0), time_tlv(1, 0), time_tlv(2, 0)].concat();
        assert_err(
            &with_validity(&times, 1, 0, true).0,
            "15 stray bytes after notAfter, inside the validity",
        );
        // The validity is missing.
        let tbs = [tlv(INTEGER, &[1], 0), tlv(SEQUENCE, &[], 0), name(1, 0)].concat();
        assert_err(
            &tlv(SEQUENCE, &tlv(SEQUENCE, &tbs, 0), 0),
            "expected a SEQUENCE (validity)",
        );
    }

    #[test]
    fn the_version_is_optional() {
        for version in [true, false] {
            let (der, _) = build(0, 1_000_000_000, 3, 0, version);
            assert_eq!(not_after_der(&der), Ok(1_000_000_000));
        }
    }

    #[test]
    fn long_form_lengths_of_one_to_four_bytes() {
        for wide in 0..=4 {
            for pad in [0, 100, 130, 300, 70_000] {
                let (der, _) = build(FIRST, LAST, pad, wide, true);
                assert_eq!(not_after_der(&der), Ok(LAST), "wide {wide}, pad {pad}");
            }
        }
        // A 70000-byte issuer needs 3 length bytes even when minimal.
        let (der, _) = build(0, 1, 70_000, 0, true);
        assert_eq!(&der[..2], &[0x30, 0x83]);
    }

    // ---- the openssl command line -----------------------------------------

    /// Makes a certificate valid for `days` with openssl in `dir`: its PEM
    /// text and the Unix time of `openssl x509 -enddate`. None if openssl
    /// is not on PATH.
    fn openssl_cert(dir: &std::path::Path, days: u32) -> Option<(String, i64)> {
        let (key, crt) = (
            dir.join(format!("{days}.key")),
            dir.join(format!("{days}.crt")),
        );
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .args(["-subj", "/CN=acme.localhost", "-days", &days.to_string()])
            .output();
        let made = match made {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            made => made.expect("cannot run openssl"),
        };
        assert!(
            made.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let shown = Command::new("openssl")
            .args(["x509", "-enddate", "-noout", "-in"])
            .arg(&crt)
            .output()
            .expect("cannot run openssl x509");
        assert!(
            shown.status.success(),
            "openssl x509: {}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let shown = String::from_utf8(shown.stdout).unwrap();
        Some((fs_err::read_to_string(&crt).unwrap(), openssl_date(&shown)))
    }

    /// `notAfter=Mar  6 05:11:57 2027 GMT` as Unix seconds, through
    /// `timefmt::parse_compact_utc`.
    fn openssl_date(line: &str) -> i64 {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let date = line
            .trim()
            .strip_prefix("notAfter=")
            .unwrap_or_else(|| panic!("{line:?}"));
        let words: Vec<&str> = date.split_whitespace().collect();
        let [month, day, clock, year, "GMT"] = words[..] else {
            panic!("unexpected openssl date {line:?}");
        };
        let month = MONTHS.iter().position(|m| *m == month).unwrap() + 1;
        let day: u32 = day.parse().unwrap();
        let compact = format!("{year}{month:02}{day:02}T{}Z", clock.replace(':', ""));
        let unix = timefmt::parse_compact_utc(&compact).unwrap_or_else(|| panic!("{compact}"));
        i64::try_from(unix).unwrap()
    }

    fn openssl_missing() {
        if std::env::var_os("CI").is_some() {
            panic!("openssl is not on PATH, and CI is set: this test must run in CI");
        }
        eprintln!("note: openssl is not on PATH; skipping the comparison");
    }

    #[test]
    fn agrees_with_openssl_enddate() {
        let dir = tempfile::TempDir::new().unwrap();
        // 20000 days reach past 2049: a GeneralizedTime.
        for days in [1, 90, 397, 3650, 20_000] {
            let Some((text, expected)) = openssl_cert(dir.path(), days) else {
                return openssl_missing();
            };
            assert_eq!(not_after_pem(&text), Ok(expected), "-days {days}:\n{text}");
        }
        let (text, _) = openssl_cert(dir.path(), 20_000).unwrap();
        let der = B64
            .decode(
                text.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        assert!(
            der.windows(2).any(|w| w == [GENERALIZED_TIME, 15]),
            "no GeneralizedTime in {text}"
        );
    }

    #[test]
    fn an_openssl_chain_gives_its_leaf() {
        let dir = tempfile::TempDir::new().unwrap();
        let Some((leaf, leaf_end)) = openssl_cert(dir.path(), 90) else {
            return openssl_missing();
        };
        let (intermediate, intermediate_end) = openssl_cert(dir.path(), 3650).unwrap();
        assert_ne!(leaf_end, intermediate_end);
        let chain = dir.path().join("acme.localhost.crt");
        fs_err::write(&chain, format!("{leaf}{intermediate}")).unwrap();
        let text = fs_err::read_to_string(&chain).unwrap();
        assert_eq!(not_after_pem(&text), Ok(leaf_end));
        assert_eq!(
            not_after_pem(&format!("{intermediate}{leaf}")),
            Ok(intermediate_end)
        );
    }

    // ---- properties -----------------------------------------------------------

    /// The last second of UTCTime, 2049-12-31T23:59:59Z.
    const UTC_LAST: i64 = 2_524_607_999;

    /// A time from 1950 to 9999, as often a UTCTime as a GeneralizedTime,
    /// the edges of both included.
    fn when() -> impl Strategy<Value = i64> {
        prop_oneof![
            FIRST..=UTC_LAST,
            UTC_LAST + 1..=LAST,
            prop::sample::select(vec![FIRST, UTC_LAST, UTC_LAST + 1, LAST]),
        ]
    }

    /// A built certificate: its DER, where its validity ends, its notAfter.
    fn built() -> impl Strategy<Value = (Vec<u8>, usize, i64)> {
        let pad = prop_oneof![0usize..128, 128usize..256, 256usize..400];
        (when(), when(), pad, 0usize..=4, any::<bool>()).prop_map(
            |(before, after, pad, wide, version)| {
                let (der, end) = build(before, after, pad, wide, version);
                (der, end, after)
            },
        )
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = not_after_der(&bytes);
        }

        #[test]
        fn any_bytes_behind_sequence_headers_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            first in prop_oneof![Just(0x30u8), any::<u8>()],
        ) {
            // Past the first two checks, so that random bytes reach the inner elements.
            let der = [&[0x30, 0x82][..], &u16::try_from(bytes.len() + 4).unwrap().to_be_bytes(), &[first, 0x82], &u16::try_from(bytes.len()).unwrap().to_be_bytes(), &bytes].concat();
            let _ = not_after_der(&der);
        }

        #[test]
        fn every_truncation_is_an_error((der, _, not_after) in built()) {
            prop_assert_eq!(not_after_der(&der), Ok(not_after));
            for n in 0..der.len() {
                prop_assert!(not_after_der(&der[..n]).is_err(), "prefix of {} bytes", n);
            }
        }

        #[test]
        fn flipped_header_bytes_never_panic(
            (der, end, _) in built(),
            at in any::<prop::sample::Index>(),
            xor in 1u8..,
        ) {
            let mut der = der;
            der[at.index(end)] ^= xor;
            let _ = not_after_der(&der);
            let mut fixed = fixed_der();
            fixed[at.index(FIXED_VALIDITY_END)] ^= xor;
            let _ = not_after_der(&fixed);
        }

        #[test]
        fn round_trips_every_time_from_1950_to_9999((der, _, not_after) in built()) {
            prop_assert_eq!(not_after_der(&der), Ok(not_after));
            prop_assert_eq!(not_after_pem(&pem(&der)), Ok(not_after));
        }
    }

    #[test]
    fn every_truncation_of_the_fixed_certificate_is_an_error() {
        let der = fixed_der();
        for n in 0..der.len() {
            assert!(not_after_der(&der[..n]).is_err(), "prefix of {n} bytes");
        }
    }
}
