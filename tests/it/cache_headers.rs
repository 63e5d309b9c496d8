//! The `Cache-Control` Caddy sends for static files and media (docs/caddy.md,
//! "Cache headers"): a year for a static name that carries a content hash,
//! a minute for any other static name, an hour for media, nothing on errors.
//!
//! - `tests/fixtures/static-names.txt` lists every file a real collectstatic
//!   (ManifestStaticFilesStorage, with Django's admin) and a real
//!   django-compressor run wrote, marked `hashed` or `plain` by what Django
//!   and compressor say (the manifest, the files compressor added), not by
//!   our pattern. `tests/fixtures/static-names.py` makes it.
//! - The pattern is checked against it and against names it must refuse,
//!   with the `regex` crate (the RE2 syntax of Go's regexp) and proptest,
//!   then by a running Caddy, whose own regexp decides in production.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proptest::prelude::*;
use regex::Regex;

use crate::common;
use crate::common::caddy::{caddy_dir, RunningCaddy};
use sum::config::layout::Root;
use sum::config::sites;
use sum::render::caddy::{
    self, Served, CACHE_HASHED, CACHE_MEDIA, CACHE_STATIC, HASHED_STATIC_NAME,
};
use sum::site_state::PreviousStatic;

/// (hashed, path below /static/) for every name in the fixture.
fn real_names() -> Vec<(bool, String)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/static-names.txt");
    let text = std::fs::read_to_string(file).unwrap();
    let names: Vec<(bool, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.split_once(' ') {
            Some(("hashed", name)) => (true, name.to_string()),
            Some(("plain", name)) => (false, name.to_string()),
            _ => panic!("static-names.txt: bad line {l:?}"),
        })
        .collect();
    assert!(names.len() > 200, "{} names", names.len());
    names
}

/// Names no tool above wrote, with the verdict they must get.
const MADE_UP: &[(bool, &str)] = &[
    (true, "css/site.3f2a9c1b7d4e.css"),
    (true, "CACHE/css/output.3f2a9c1b7d4e.css"),
    (true, "CACHE/js/output.3f2a9c1b7d4e.js"),
    (true, "x.abcdefabcdef0.3a189e54c305.js"),
    (false, "js/jquery.min.js"),
    (false, "fonts/font.woff2"),
    (false, "js/app.1234.js"),
    // 13, 11 hex digits; upper case; a letter past f.
    (false, "css/x.abcdefabcdef0.css"),
    (false, "css/x.abcdefabcde.css"),
    (false, "css/x.ABCDEF123456.css"),
    (false, "css/x.abcdef12345g.css"),
    // Not right before the last extension; in a directory's name; no name
    // before it (compressor names a file so only without a base name, which
    // its template tag always gives).
    (false, "js/lib.abcdef123456.min.js"),
    (false, "v.abcdef123456/app.js"),
    (false, "CACHE/css/abcdef123456.css"),
    (false, "img/201912251230.jpg"),
    (false, "CACHE/manifest.json"),
    // Other bundlers' hashes are left to the short lifetime.
    (false, "assets/index-4f3a2b1c.js"),
];

fn pattern() -> Regex {
    Regex::new(HASHED_STATIC_NAME).unwrap()
}

#[test]
fn the_hashed_name_pattern_tells_what_django_and_compressor_hashed() {
    let re = pattern();
    let wrong: Vec<String> = real_names()
        .iter()
        .map(|(h, n)| (*h, n.as_str()))
        .chain(MADE_UP.iter().copied())
        .filter(|(hashed, name)| re.is_match(&format!("/{name}")) != *hashed)
        .map(|(hashed, name)| format!("{name}: hashed {hashed}, matched {}", !hashed))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

proptest! {
    /// Any name `hashed_name` can make (`<root>.<hash><ext>`, as
    /// `os.path.splitext` splits it) matches.
    #[test]
    fn every_name_django_hashes_matches(
        dir in "([a-z0-9_.-]{1,8}/){0,3}",
        root in "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,15}",
        hash in "[0-9a-f]{12}",
        ext in "(\\.[A-Za-z0-9_-]{1,6})?",
    ) {
        let name = format!("/{dir}{root}.{hash}{ext}");
        prop_assert!(pattern().is_match(&name), "{}", name);
    }

    /// A hex word of any other length, in upper case, or anywhere but right
    /// before the last extension does not, whatever else the name holds
    /// (words shorter than 12 characters).
    #[test]
    fn other_hex_words_do_not_match(
        dir in "([a-z0-9_.-]{1,8}/){0,3}",
        root in "[A-Za-z0-9_-]{1,8}(\\.[A-Za-z0-9_-]{1,6}){0,2}",
        len in (1usize..40).prop_filter("not 12", |n| *n != 12),
        hex in "[0-9a-f]{40}",
        upper in "[0-9A-F]{11}[A-F]",
        ext in "(\\.[A-Za-z0-9_-]{1,6})?",
        more in "\\.[A-Za-z0-9_-]{1,6}",
    ) {
        let re = pattern();
        for name in [
            format!("/{dir}{root}.{}{ext}", &hex[..len]),
            format!("/{dir}{root}.{upper}{ext}"),
            format!("/{dir}{root}.{}{more}.js", &hex[..12]),
        ] {
            prop_assert!(!re.is_match(&name), "{}", name);
        }
    }
}

/// Writes `files` (path, body) under `dir`, readable by the `caddy` user.
fn put(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, body) in files {
        let path = dir.join(name);
        let mut d = path.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        while d.starts_with(dir) {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
            d.pop();
        }
    }
}

/// A body Caddy compresses (text over its 512-byte minimum).
fn css(name: &str) -> Vec<u8> {
    format!("/* {name} */\n{}", "p { margin: 0 }\n".repeat(64)).into_bytes()
}

/// The live release serves every name of the fixture and of `MADE_UP`; the
/// previous release and the media directory a few of their own.
fn serve(dir: &Path) -> RunningCaddy {
    let root = common::root_with_sites(&[(
        "acme.toml",
        "domain = \"acme.localhost\"\n[git]\nurl = \"https://x.example/a.git\"\n",
    )]);
    let site = sites::load_all(&Root::new(root.path()))
        .unwrap()
        .sites
        .remove(0);
    let names = real_names()
        .into_iter()
        .chain(MADE_UP.iter().map(|(h, n)| (*h, n.to_string())));
    put(
        &dir.join("r2"),
        &names.map(|(_, n)| (n.clone(), css(&n))).collect::<Vec<_>>(),
    );
    put(
        &dir.join("r1"),
        &[
            ("css/old.0123456789ab.css".into(), css("old hashed")),
            ("css/old.css".into(), css("old plain")),
        ],
    );
    put(
        &dir.join("media"),
        &[
            // A hash-like name in media is still an upload.
            ("uploads/photo.3f2a9c1b7d4e.jpg".into(), b"jpeg".to_vec()),
            ("uploads/logo.svg".into(), css("an svg")),
        ],
    );
    let served = Served {
        static_dir: dir.join("r2").display().to_string(),
        media_dir: dir.join("media").display().to_string(),
        previous_static: Some(PreviousStatic {
            release: "r1".into(),
            static_dir: dir.join("r1").display().to_string(),
        }),
        ..Served::defaults(&site, true)
    };
    RunningCaddy::start(dir, &caddy::snippet(&site, &served).unwrap())
}

#[test]
fn caddy_sends_each_file_its_cache_lifetime() {
    if !common::require_tool("caddy") || !common::require_tool("curl") {
        return;
    }
    let dir = caddy_dir();
    let caddy = serve(dir.path());

    let names: Vec<(bool, String)> = real_names()
        .into_iter()
        .chain(MADE_UP.iter().map(|(h, n)| (*h, n.to_string())))
        .collect();
    let paths: Vec<String> = names.iter().map(|(_, n)| format!("/static/{n}")).collect();
    let answers = caddy.status_and_header(&paths, "cache-control");
    let wrong: Vec<String> = names
        .iter()
        .zip(&answers)
        .filter(|((hashed, _), answer)| {
            let want = if *hashed { CACHE_HASHED } else { CACHE_STATIC };
            **answer != (200, want.to_string())
        })
        .map(|((hashed, name), answer)| format!("{name} (hashed {hashed}): {answer:?}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let expect = [
        // The previous release's files, served where the live one has none.
        ("/static/css/old.0123456789ab.css", 200, Some(CACHE_HASHED)),
        ("/static/css/old.css", 200, Some(CACHE_STATIC)),
        (
            "/media/uploads/photo.3f2a9c1b7d4e.jpg",
            200,
            Some(CACHE_MEDIA),
        ),
        ("/media/uploads/logo.svg", 200, Some(CACHE_MEDIA)),
        // An error keeps no file's lifetime: a 404 for a hashed name that
        // turns up a moment later must not stay cached for a year.
        ("/static/css/none.3f2a9c1b7d4e.css", 404, None),
        ("/static/css/none.css", 404, None),
        ("/media/none.jpg", 404, None),
    ];
    for (path, status, cache_control) in expect {
        let a = caddy.request(path, &[]);
        assert_eq!(
            (a.status, a.header("cache-control")),
            (status, cache_control),
            "{path}"
        );
    }
}

/// `encode zstd gzip` sits at the site level, so it also wraps both
/// `file_server`s of `/static/*` and the media one; and Caddy's `ETag`
/// lets a browser revalidate a plain name once its minute is over.
#[test]
fn caddy_compresses_static_files_and_media_and_revalidates_plain_names() {
    if !common::require_tool("caddy") || !common::require_tool("curl") {
        return;
    }
    let dir = caddy_dir();
    let caddy = serve(dir.path());
    for (path, encoding) in [
        ("/static/css/site.3f2a9c1b7d4e.css", "zstd"),
        ("/static/css/site.3f2a9c1b7d4e.css", "gzip"),
        ("/static/css/old.0123456789ab.css", "gzip"),
        ("/static/css/old.css", "zstd"),
        ("/media/uploads/logo.svg", "gzip"),
    ] {
        let a = caddy.request(path, &["-H", &format!("Accept-Encoding: {encoding}")]);
        assert_eq!(
            (a.status, a.header("content-encoding")),
            (200, Some(encoding)),
            "{path}"
        );
        assert_eq!(a.header("vary"), Some("Accept-Encoding"), "{path}");
    }

    let first = caddy.request("/static/js/jquery.min.js", &[]);
    let etag = first.header("etag").expect("an ETag").to_string();
    let again = caddy.request(
        "/static/js/jquery.min.js",
        &["-H", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(again.status, 304);
    assert_eq!(again.header("cache-control"), Some(CACHE_STATIC));
    assert!(again.body.is_empty());
}
