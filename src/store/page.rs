//! Keyset pages: a listing resumes just past the last row it gave (its time and id), so
//! reading page 1,000 costs what page 1 does and rows written meanwhile do not shift the
//! pages after it. Counting the whole match is a separate, optional query: on a tenant with a
//! million executions it is the one part of a listing that grows with history.

/// Where a page starts: just past the row with this sort key and id (in the listing's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    /// The row's sort key: a time in Unix ms, or a step's sequence number.
    pub at: i64,
    pub id: String,
}

/// What a listing is asked for.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Rows on the page (already bounded by the caller).
    pub limit: i64,
    /// Rows to skip (the older way to page: it costs as many rows as it skips).
    pub offset: i64,
    /// Resume past this row.
    pub after: Option<Keyset>,
    /// Also count every row the filter matches.
    pub count: bool,
}

/// One page of rows, where the next one starts, and the count when asked.
#[derive(Debug)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Past the last row, when more rows follow.
    pub next: Option<Keyset>,
    pub total: Option<i64>,
}

impl PageQuery {
    /// `limit + 1`: the extra row says whether another page follows.
    pub(super) fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cut the one extra row off, and name the key of the last row kept when it was there.
    pub(super) fn finish<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> Keyset, total: Option<i64>) -> Paged<T> {
        let more = items.len() as i64 > self.limit;
        items.truncate(self.limit.max(0) as usize);
        let next = if more { items.last().map(key) } else { None };
        Paged { items, next, total }
    }

    /// The cursor's two binds: none (every row qualifies) or its key.
    pub(super) fn after_binds(&self) -> (Option<i64>, Option<&str>) {
        match &self.after {
            Some(k) => (Some(k.at), Some(k.id.as_str())),
            None => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &i64) -> Keyset {
        Keyset {
            at: *n,
            id: n.to_string(),
        }
    }

    #[test]
    fn the_extra_row_means_another_page() {
        let q = PageQuery {
            limit: 2,
            ..Default::default()
        };
        let p = q.finish(vec![5, 4, 3], key, None);
        assert_eq!(p.items, vec![5, 4]);
        assert_eq!(p.next, Some(key(&4)));
        let last = q.finish(vec![2, 1], key, Some(5));
        assert_eq!(last.items, vec![2, 1]);
        assert_eq!(last.next, None);
        assert_eq!(last.total, Some(5));
    }
}
