//! sum-golden-path: run Django/Wagtail sites on one Debian/Ubuntu VPS,
//! with systemd as the only supervisor.

pub mod calendar;
