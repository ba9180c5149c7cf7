//! The layout of a seat map: the terms an event is created with, their validation, the flat
//! seat index and the seat ids ("Section-Row-Number") that name it, and the best-available
//! search over one row. Pure values, shared by the `SeatMap` entity and the HTTP handlers.
//!
//! Seats are numbered 0.. in front-first order (sections as given, rows as given, seats from 1),
//! so a row is a contiguous slice of the map's status bytes and a section a contiguous range of
//! rows. The layout keeps only the prefix offsets of rows and sections: two `u32` per row.

use std::collections::HashSet;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::coupon_policy::AMOUNT_MAX;
use crate::Rejection;

/// Most seats one event may have. The actor keeps one status byte per seat, so this bounds a
/// map to a few hundred kilobytes plus its open holds.
pub const SEATS_MAX: u32 = 200_000;
/// Most seats in one row; keeps a best-available scan of a row short.
pub const ROW_SEATS_MAX: u32 = 1_000;
/// Most seats one hold may take, whatever an event's terms say.
pub const SEATS_PER_ORDER_MAX: u32 = 50;
/// Longest hold an event may ask for.
pub const HOLD_TTL_SECS_MAX: i64 = 24 * 3_600;
/// API defaults for terms a request leaves out.
pub const HOLD_TTL_SECS_DEFAULT: i64 = 600;
pub const MAX_SEATS_PER_ORDER_DEFAULT: u32 = 4;
/// Longest section or row name; they are parts of seat ids.
pub const NAME_LEN_MAX: usize = 16;
/// Longest event name or venue.
pub const TEXT_LEN_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowTerms {
    pub name: String,
    pub seats: u32,
    pub price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionTerms {
    pub name: String,
    pub rows: Vec<RowTerms>,
}

/// What an event is created with (times in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTerms {
    pub name: String,
    pub venue: String,
    pub starts_at_ms: i64,
    /// `None`: holds are taken from creation on.
    pub sales_open_at_ms: Option<i64>,
    pub hold_ttl_secs: i64,
    pub max_seats_per_order: u32,
    pub queue_required: bool,
    pub sections: Vec<SectionTerms>,
}

/// The rules on an event's terms, each failure naming its field.
pub fn validate_terms(terms: &EventTerms) -> Result<(), Rejection> {
    for (field, text) in [("name", &terms.name), ("venue", &terms.venue)] {
        if text.trim().is_empty()
            || text.chars().count() > TEXT_LEN_MAX
            || !crate::text::is_plain(text, false)
        {
            return Err(Rejection::validation(
                field,
                format!(
                    "must be 1 to {TEXT_LEN_MAX} characters, {}",
                    crate::text::PLAIN_RULE
                ),
            ));
        }
    }
    if terms
        .sales_open_at_ms
        .is_some_and(|at| at >= terms.starts_at_ms)
    {
        return Err(Rejection::validation(
            "sales_open_at",
            "must be before starts_at",
        ));
    }
    if !(1..=HOLD_TTL_SECS_MAX).contains(&terms.hold_ttl_secs) {
        return Err(Rejection::validation(
            "hold_ttl_secs",
            format!("must be 1 to {HOLD_TTL_SECS_MAX}"),
        ));
    }
    if !(1..=SEATS_PER_ORDER_MAX).contains(&terms.max_seats_per_order) {
        return Err(Rejection::validation(
            "max_seats_per_order",
            format!("must be 1 to {SEATS_PER_ORDER_MAX}"),
        ));
    }
    validate_sections(&terms.sections)
}

fn validate_sections(sections: &[SectionTerms]) -> Result<(), Rejection> {
    if sections.is_empty() {
        return Err(Rejection::validation(
            "sections",
            "name at least one section",
        ));
    }
    let mut seats_total = 0u64;
    // Sets, not pairwise scans: a 1 MiB layout holds tens of thousands of rows.
    let mut section_names = HashSet::new();
    for (s, section) in sections.iter().enumerate() {
        let field = format!("sections[{s}]");
        validate_name(&field, &section.name)?;
        if !section_names.insert(section.name.as_str()) {
            return Err(Rejection::validation(&field, "section names must differ"));
        }
        if section.rows.is_empty() {
            return Err(Rejection::validation(&field, "name at least one row"));
        }
        let mut row_names = HashSet::new();
        for (r, row) in section.rows.iter().enumerate() {
            let field = format!("sections[{s}].rows[{r}]");
            validate_row(&field, row)?;
            if !row_names.insert(row.name.as_str()) {
                return Err(Rejection::validation(&field, "row names must differ"));
            }
            seats_total += u64::from(row.seats);
        }
    }
    if seats_total > u64::from(SEATS_MAX) {
        return Err(Rejection::validation(
            "sections",
            format!("{seats_total} seats; an event has at most {SEATS_MAX}"),
        ));
    }
    Ok(())
}

fn validate_row(field: &str, row: &RowTerms) -> Result<(), Rejection> {
    validate_name(field, &row.name)?;
    if !(1..=ROW_SEATS_MAX).contains(&row.seats) {
        return Err(Rejection::validation(
            field,
            format!("seats must be 1 to {ROW_SEATS_MAX}"),
        ));
    }
    if !(0..=AMOUNT_MAX).contains(&row.price) {
        return Err(Rejection::validation(
            field,
            format!("price must be 0 to {AMOUNT_MAX}"),
        ));
    }
    Ok(())
}

/// Names are parts of "Section-Row-Number" ids, so they may not contain the separator.
fn validate_name(field: &str, name: &str) -> Result<(), Rejection> {
    let fits = (1..=NAME_LEN_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match fits {
        true => Ok(()),
        false => Err(Rejection::validation(
            field,
            format!("name must be 1 to {NAME_LEN_MAX} of A-Z, a-z, 0-9, _"),
        )),
    }
}

/// Where a seat is: indexes into the terms, and its 1-based number in the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatPlace {
    pub section: usize,
    /// The row's index within its section.
    pub row: usize,
    pub number: u32,
}

/// The flat index of the terms' seats: prefix offsets of rows and of sections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Row `r` (counted over all sections) holds seats `row_start[r]..row_start[r + 1]`.
    row_start: Vec<u32>,
    /// Section `s` holds rows `section_start[s]..section_start[s + 1]`.
    section_start: Vec<u32>,
}

impl Layout {
    /// The layout of validated terms.
    pub fn new(terms: &EventTerms) -> Layout {
        let mut layout = Layout {
            row_start: vec![0],
            section_start: vec![0],
        };
        for section in &terms.sections {
            for row in &section.rows {
                let end = layout.seats_total() + row.seats;
                layout.row_start.push(end);
            }
            layout.section_start.push(layout.row_count());
        }
        layout
    }

    pub fn seats_total(&self) -> u32 {
        self.row_start.last().copied().unwrap_or(0)
    }

    pub fn row_count(&self) -> u32 {
        u32::try_from(self.row_start.len().saturating_sub(1)).expect("rows fit u32")
    }

    pub fn section_count(&self) -> usize {
        self.section_start.len().saturating_sub(1)
    }

    /// The rows of section `s`, front first, as overall row numbers.
    pub fn rows_of_section(&self, s: usize) -> Range<u32> {
        self.section_start[s]..self.section_start[s + 1]
    }

    /// The seats of overall row `r`, as flat indexes.
    pub fn seats_of_row(&self, r: u32) -> Range<u32> {
        let r = r as usize;
        self.row_start[r]..self.row_start[r + 1]
    }

    pub fn seats_of_section(&self, s: usize) -> Range<u32> {
        let rows = self.rows_of_section(s);
        self.row_start[rows.start as usize]..self.row_start[rows.end as usize]
    }

    /// The overall row of a seat (a binary search over rows).
    pub fn row_of_seat(&self, seat: u32) -> u32 {
        let after = self.row_start.partition_point(|start| *start <= seat);
        u32::try_from(after - 1).expect("rows fit u32")
    }

    pub fn section_of_row(&self, r: u32) -> usize {
        self.section_start.partition_point(|start| *start <= r) - 1
    }

    pub fn section_of_seat(&self, seat: u32) -> usize {
        self.section_of_row(self.row_of_seat(seat))
    }

    pub fn place(&self, seat: u32) -> SeatPlace {
        let r = self.row_of_seat(seat);
        let section = self.section_of_row(r);
        SeatPlace {
            section,
            row: (r - self.section_start[section]) as usize,
            number: seat - self.row_start[r as usize] + 1,
        }
    }

    /// The id of a seat of this layout, e.g. "A-3-12".
    pub fn seat_id(&self, terms: &EventTerms, seat: u32) -> String {
        let at = self.place(seat);
        let section = &terms.sections[at.section];
        format!(
            "{}-{}-{}",
            section.name, section.rows[at.row].name, at.number
        )
    }

    /// The flat index of a seat id; `None` unless the id names a seat of this layout in its
    /// one canonical spelling (no leading zeros), so one seat never has two ids.
    pub fn seat_index(&self, terms: &EventTerms, id: &str) -> Option<u32> {
        let (row_key, number_text) = id.rsplit_once('-')?;
        let (section_name, row_name) = row_key.split_once('-')?;
        let number: u32 = number_text.parse().ok()?;
        if number.to_string() != number_text {
            return None;
        }
        let s = terms.sections.iter().position(|x| x.name == section_name)?;
        let row = terms.sections[s]
            .rows
            .iter()
            .position(|x| x.name == row_name)?;
        let r = self.section_start[s] + u32::try_from(row).ok()?;
        let seats = self.seats_of_row(r);
        let seat = seats.start.checked_add(number.checked_sub(1)?)?;
        seats.contains(&seat).then_some(seat)
    }

    /// Bytes of the offsets, for sizing.
    pub fn bytes(&self) -> usize {
        (self.row_start.len() + self.section_start.len()) * std::mem::size_of::<u32>()
    }
}

/// Where `quantity` adjacent free seats go in one row, by offset from the row's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub start: usize,
    /// Taking them leaves no single free seat alone between taken seats or the row's edge.
    pub orphan_free: bool,
}

/// The first orphan-free placement of `quantity` adjacent seats in `row` (whose bytes are
/// `free` or not), else the first that fits at all. One pass over the row.
///
/// In a free run of length `len >= quantity`, starting at the run's left end leaves
/// `len - quantity` free seats on the right; any other start splits them in two. So the run has
/// an orphan-free placement exactly when `len - quantity != 1`, and its left end is one.
pub fn place_in_row(row: &[u8], free: u8, quantity: usize) -> Option<Placement> {
    let mut first_fit = None;
    let mut at = 0;
    while at < row.len() {
        if row[at] != free {
            at += 1;
            continue;
        }
        let run_len = row[at..].iter().take_while(|b| **b == free).count();
        if run_len >= quantity {
            if run_len - quantity != 1 {
                return Some(Placement {
                    start: at,
                    orphan_free: true,
                });
            }
            first_fit.get_or_insert(Placement {
                start: at,
                orphan_free: false,
            });
        }
        at += run_len;
    }
    first_fit
}
