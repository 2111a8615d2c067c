//! `?limit=&cursor=&total=` on the history listings (executions, a workflow's runs, a
//! schedule's runs, an execution's steps). A cursor is opaque to clients: base64url of the
//! listing's tag and the last row's sort key and id. The tag makes a cursor from one listing
//! a clear 400 on another rather than a silently wrong page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::error::{ApiError, ApiResult};
use crate::store::{Keyset, PageQuery};

/// Which listing a cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Executions,
    WorkflowRuns,
    ScheduleRuns,
    Steps,
}

impl Listing {
    fn tag(self) -> &'static str {
        match self {
            Listing::Executions => "e",
            Listing::WorkflowRuns => "w",
            Listing::ScheduleRuns => "s",
            Listing::Steps => "t",
        }
    }

    /// The default and largest page: an execution's steps come on one page up to the
    /// default call cap (the root and 1,000 nested calls).
    fn bounds(self) -> (i64, i64) {
        match self {
            Listing::Steps => (1001, 1001),
            _ => (50, 500),
        }
    }
}

/// A listing's paging parameters as the client sent them.
#[derive(Debug, Default)]
pub struct Asked<'a> {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub cursor: Option<&'a str>,
    pub total: Option<bool>,
}

/// Read the paging parameters once, at the edge.
pub fn page(list: Listing, asked: Asked<'_>) -> ApiResult<PageQuery> {
    let (default, max) = list.bounds();
    let offset = asked.offset.unwrap_or(0).max(0);
    let after = asked.cursor.map(|c| decode(list, c)).transpose()?;
    if after.is_some() && offset > 0 {
        return Err(ApiError::BadRequest("give cursor or offset, not both".into()));
    }
    Ok(PageQuery {
        limit: asked.limit.unwrap_or(default).clamp(1, max),
        offset,
        after,
        count: asked.total.unwrap_or(false),
    })
}

/// The cursor a client sends for the page after this one.
pub fn encode(list: Listing, next: Option<&Keyset>) -> Option<String> {
    next.map(|k| URL_SAFE_NO_PAD.encode(format!("{}:{}:{}", list.tag(), k.at, k.id)))
}

fn decode(list: Listing, cursor: &str) -> ApiResult<Keyset> {
    let bad = || ApiError::BadRequest("cursor is not one this listing gave; pass next_cursor back as it came".into());
    if cursor.len() > 256 {
        return Err(bad());
    }
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some(tag), Some(at), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if tag != list.tag() || id.is_empty() {
        return Err(bad());
    }
    Ok(Keyset {
        at: at.parse().map_err(|_| bad())?,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_comes_back_as_it_went_and_only_to_its_listing() {
        let k = Keyset {
            at: 1_764_000_000_123,
            id: "0190-abc".into(),
        };
        let c = encode(Listing::Executions, Some(&k)).unwrap();
        let asked = |cursor| Asked {
            cursor: Some(cursor),
            ..Default::default()
        };
        assert_eq!(page(Listing::Executions, asked(&c)).unwrap().after, Some(k));
        assert!(page(Listing::WorkflowRuns, asked(&c)).is_err());
        for junk in ["", "!!", "ZTo6", "ZTp4Onk", &"A".repeat(300)] {
            assert!(page(Listing::Executions, asked(junk)).is_err(), "{junk}");
        }
        let both = Asked {
            cursor: Some(&c),
            offset: Some(5),
            ..Default::default()
        };
        assert!(page(Listing::Executions, both).is_err());
        assert_eq!(encode(Listing::Steps, None), None);
    }

    #[test]
    fn limits_are_bounded_and_counting_is_asked_for() {
        let p = page(Listing::Executions, Asked::default()).unwrap();
        assert_eq!((p.limit, p.offset, p.count), (50, 0, false));
        let big = Asked {
            limit: Some(10_000),
            total: Some(true),
            ..Default::default()
        };
        let p = page(Listing::Executions, big).unwrap();
        assert_eq!((p.limit, p.count), (500, true));
        assert_eq!(page(Listing::Steps, Asked::default()).unwrap().limit, 1001);
    }
}
