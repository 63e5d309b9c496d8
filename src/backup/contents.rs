//! What a dump holds, counted from pg_dump's plain-SQL stream while it is
//! written: the tables it defines and the rows it copies. Exact, read from
//! the same snapshot the dump is, and free of another query or another
//! pass over the file (docs/backups.md, "What a backup holds").
//!
//! pg_dump opens every object with a comment of its own (`-- Name: notes;
//! Type: TABLE; Schema: public; Owner: -`) and every table's data with
//! `-- Data for Name: notes; Type: TABLE DATA; …` followed by a `COPY …
//! FROM stdin;` block, one line per row (a newline inside a value is
//! written `\n`), ended by a line `\.`. Tables are counted from those
//! comments rather than from `CREATE TABLE`, which a function body may
//! contain too; a `COPY` counts only right after its data comment, so no
//! line of a function body or of a row starts one.

use serde::{Deserialize, Serialize};

/// The tables a dump defines and the rows it holds, in the manifest as
/// `"contents": {"tables": 2, "rows": 25000}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// Tables defined (partitioned tables and each partition count; views,
    /// materialized views and foreign tables do not).
    pub tables: u64,
    /// Rows of all tables' data (each partition's rows once).
    pub rows: u64,
}

impl std::fmt::Display for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} table{}, {} row{}",
            self.tables,
            plural(self.tables),
            self.rows,
            plural(self.rows)
        )
    }
}

/// The start of a line that is kept to recognise it: pg_dump's comments
/// name an object and its schema (at most 63 bytes each, quoted) well
/// within it. Rows need only their first bytes, to see the `\.` that ends
/// a block.
const LINE_START: usize = 512;
const ROW_START: usize = 3;

const TABLE: (&[u8], &[u8]) = (b"-- Name: ", b"; Type: TABLE; Schema: ");
const TABLE_DATA: (&[u8], &[u8]) = (b"-- Data for Name: ", b"; Type: TABLE DATA; Schema: ");

/// Counts a dump's tables and rows from its bytes, in pieces of any size.
#[derive(Debug, Default)]
pub struct Counter {
    contents: Contents,
    /// The start of the current line.
    line: Vec<u8>,
    /// Inside a `COPY … FROM stdin;` block.
    in_copy: bool,
    /// The last statement-level line was a table's data comment.
    data_next: bool,
}

impl Counter {
    pub fn new() -> Counter {
        Counter {
            line: Vec::with_capacity(LINE_START),
            ..Counter::default()
        }
    }

    /// Counts the next bytes of the dump.
    pub fn push(&mut self, mut data: &[u8]) {
        loop {
            if self.in_copy && self.line.is_empty() {
                data = self.rows(data);
            }
            let Some(i) = memchr::memchr(b'\n', data) else {
                break;
            };
            self.keep(&data[..i]);
            self.end_line();
            data = &data[i + 1..];
        }
        self.keep(data);
    }

    /// At the start of a line inside a `COPY` block: counts the whole rows
    /// before the next line that starts with `\.` (or before the last,
    /// unfinished line) at once, and leaves the rest to [`Counter::end_line`].
    /// Rows are often short, and a line at a time cost a fifth to a
    /// quarter of gzip's time on 7-byte rows (docs/backups.md).
    fn rows<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let mut from = 0;
        let end = loop {
            match memchr::memmem::find(&data[from..], b"\\.") {
                Some(i) if from + i == 0 || data[from + i - 1] == b'\n' => break from + i,
                Some(i) => from += i + 1,
                None => break memchr::memrchr(b'\n', data).map_or(0, |i| i + 1),
            }
        };
        self.contents.rows += memchr::memchr_iter(b'\n', &data[..end]).count() as u64;
        &data[end..]
    }

    /// What the whole dump held.
    pub fn finish(mut self) -> Contents {
        if !self.line.is_empty() {
            self.end_line();
        }
        self.contents
    }

    fn keep(&mut self, part: &[u8]) {
        let max = if self.in_copy { ROW_START } else { LINE_START };
        let room = max.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_line(&mut self) {
        let line = self.line.as_slice();
        if self.in_copy {
            if line == b"\\." {
                self.in_copy = false;
            } else {
                self.contents.rows += 1;
            }
        } else if line.is_empty() || line.starts_with(b"--") {
            if is_comment(line, TABLE) {
                self.contents.tables += 1;
                self.data_next = false;
            } else if is_comment(line, TABLE_DATA) {
                self.data_next = true;
            }
        } else {
            self.in_copy = self.data_next && line.starts_with(b"COPY ");
            self.data_next = false;
        }
        self.line.clear();
    }
}

/// `line` is pg_dump's comment `<prefix><name><infix>…`.
fn is_comment(line: &[u8], (prefix, infix): (&[u8], &[u8])) -> bool {
    line.strip_prefix(prefix)
        .is_some_and(|rest| rest.windows(infix.len()).any(|w| w == infix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// pg_dump 15's output for a database with a plain, an empty, an
    /// unlogged and a partitioned table (with one partition), a view, a
    /// materialized view, a function whose body creates a table, and rows
    /// that look like the dump's own lines.
    const DUMP: &str = r#"--
-- PostgreSQL database dump
--

\restrict YSgTFccV5uXUQWFK3qvdhBI1fkJlQBnuBcPbCATrMZhzV0QtMtkgSUmAiGyguRP

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.f() RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
CREATE TABLE IF NOT EXISTS t2 (x int);
COPY t2 FROM stdin;
END $$;


SET default_tablespace = '';

--
-- Name: empty; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.empty (
    x integer
);


--
-- Name: notes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.notes (
    id integer NOT NULL,
    title text,
    body text
);


--
-- Name: mv; Type: MATERIALIZED VIEW; Schema: public; Owner: -
--

CREATE MATERIALIZED VIEW public.mv AS
 SELECT notes.id
   FROM public.notes
  WITH NO DATA;


--
-- Name: parted; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.parted (
    k integer,
    v text
)
PARTITION BY RANGE (k);


--
-- Name: parted_1; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.parted_1 (
    k integer,
    v text
);


--
-- Name: unl; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.unl (
    x integer
);


--
-- Name: v; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.v AS
 SELECT notes.id
   FROM public.notes;


--
-- Name: parted_1; Type: TABLE ATTACH; Schema: public; Owner: -
--

ALTER TABLE ONLY public.parted ATTACH PARTITION public.parted_1 FOR VALUES FROM (0) TO (100);


--
-- Data for Name: empty; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.empty (x) FROM stdin;
\.


--
-- Data for Name: notes; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.notes (id, title, body) FROM stdin;
1	n1	c4ca4238a0b923820dcc509a6f75849b
2	n2	c81e728d9d4c2f636f067f89cc14862c
6	a\nb	\\.
7	-- Name: x; Type: TABLE; Schema: public; Owner: -	COPY public.notes (id) FROM stdin;
\.


--
-- Data for Name: parted_1; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.parted_1 (k, v) FROM stdin;
1	v
2	v
3	v
\.


--
-- Data for Name: unl; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.unl (x) FROM stdin;
-- Name: y; Type: TABLE; Schema: public; Owner: -
2
\.


--
-- Name: notes_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.notes_id_seq', 7, true);


--
-- Name: mv; Type: MATERIALIZED VIEW DATA; Schema: public; Owner: -
--

REFRESH MATERIALIZED VIEW public.mv;


--
-- PostgreSQL database dump complete
--

\unrestrict YSgTFccV5uXUQWFK3qvdhBI1fkJlQBnuBcPbCATrMZhzV0QtMtkgSUmAiGyguRP
"#;

    fn count(pieces: &[&[u8]]) -> Contents {
        let mut c = Counter::new();
        for p in pieces {
            c.push(p);
        }
        c.finish()
    }

    #[test]
    fn counts_tables_and_rows_not_lookalikes() {
        // empty, notes, parted, parted_1, unl; 0 + 4 + 3 + 2 rows.
        assert_eq!(count(&[DUMP.as_bytes()]), Contents { tables: 5, rows: 9 });
    }

    #[test]
    fn an_empty_database_holds_nothing() {
        let head = DUMP.split("\nSET default_tablespace").next().unwrap();
        let tail = DUMP.split("-- PostgreSQL database dump complete").nth(1);
        let empty = format!(
            "{head}\n--\n-- PostgreSQL database dump complete{}",
            tail.unwrap()
        );
        assert_eq!(count(&[empty.as_bytes()]), Contents::default());
        assert_eq!(count(&[]), Contents::default());
    }

    #[test]
    fn a_row_longer_than_a_line_start_counts_once() {
        let long = "x".repeat(LINE_START * 3);
        let dump = format!(
            "--\n-- Name: t; Type: TABLE; Schema: public; Owner: -\n--\n\nCREATE TABLE public.t (x text);\n\n\
             --\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n\
             COPY public.t (x) FROM stdin;\n{long}\n\\.{long}\n{long}\n\\.\n"
        );
        assert_eq!(count(&[dump.as_bytes()]), Contents { tables: 1, rows: 3 });
    }

    #[test]
    fn contents_read_as_words() {
        assert_eq!(
            Contents { tables: 1, rows: 1 }.to_string(),
            "1 table, 1 row"
        );
        assert_eq!(
            Contents {
                tables: 0,
                rows: 25_000
            }
            .to_string(),
            "0 tables, 25000 rows"
        );
    }

    proptest! {
        /// The counts do not depend on how the stream is cut into pieces.
        #[test]
        fn any_cut_of_the_stream_counts_the_same(
            cuts in proptest::collection::vec(0..DUMP.len(), 0..40),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let bytes = DUMP.as_bytes();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts {
                pieces.push(&bytes[at..c]);
                at = c;
            }
            pieces.push(&bytes[at..]);
            prop_assert_eq!(count(&pieces), count(&[bytes]));
        }

        /// Rows made of what COPY's text format writes (an escaped
        /// backslash, escaped newlines, dots, tabs), cut anywhere.
        #[test]
        fn rows_are_counted_exactly_wherever_the_stream_is_cut(
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec!["a", "\\\\", "\\n", ".", "\t", "-- ", "\\."]),
                    0..8,
                ),
                0..60,
            ),
            tables in 1u64..4,
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..20),
        ) {
            let mut dump = String::new();
            for t in 0..tables {
                dump += &format!(
                    "--\n-- Name: t{t}; Type: TABLE; Schema: public; Owner: -\n--\n\n\
                     CREATE TABLE public.t{t} (x text);\n\n\n"
                );
            }
            for t in 0..tables {
                dump += &format!(
                    "--\n-- Data for Name: t{t}; Type: TABLE DATA; Schema: public; Owner: -\n\
                     --\n\nCOPY public.t{t} (x) FROM stdin;\n"
                );
                for r in &rows {
                    // A row is never `\.` alone: COPY escapes a backslash.
                    let row = r.concat();
                    dump += if row == "\\." { "\\\\." } else { &row };
                    dump += "\n";
                }
                dump += "\\.\n\n\n";
            }
            let bytes = dump.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for c in at {
                pieces.push(&bytes[from..c]);
                from = c;
            }
            pieces.push(&bytes[from..]);
            prop_assert_eq!(
                count(&pieces),
                Contents { tables, rows: tables * rows.len() as u64 }
            );
        }

        #[test]
        fn any_bytes_are_counted_without_panic(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let c = count(&[&data]);
            prop_assert!(c.rows <= data.len() as u64 + 1);
        }
    }
}
