"""The problem ledger: a problem's life from its recording to its closing, and its figures.

* ``workflow``: the problem state machine, in one place (the ``ACTIONS`` table); every
  action appends one event;
* ``states``: the states, the values actions take, and ``TransitionError``;
* ``closures``: callback attempts and answers, the closures without a valid callback,
  the 回头看 and its relapse: the rules and writes of those workflow actions;
* ``reasons``: the lists of reasons an administrator keeps (不予立案, 退单, 延期, 解释说明)
  and the check of an action's ``reason_code``;
* ``rules``: the office's and leaders' decisions on extensions, returns (退单) and 重办:
  the rules and writes of those workflow actions;
* ``deadlines``: the response clock, the category's limits, overdue, a deadline
  replayed from the history;
* ``numbering``: the numbered series (ledger numbers, supervision orders, reports),
  without gaps;
* ``clock``: the ledger's "now" and local "today";
* ``events``: the kinds of problem events, actions and the rest;
* ``supervision``: supervision with answers (督办单, 挂牌督办, 批示): the rules and writes
  of workflow's supervision actions, and the open orders and flags by unit;
* ``joint``: joint handling (协办): the helper units' parts, the rules and writes of their
  actions and of the office's ``let_lead_reply``, the lead's reply waiting for them;
* ``event_photos``: photos posted with an action on the office pages (before and after),
  checked and kept as the phone's are, linked to the action's event;
* ``problems``: reading one problem, its events and its units within a user's scope;
* ``conflicts``: a problem's open conflicting edits, read from its events;
* ``tracking``: the resident's tracking link (回执) without login, and their own rating;
* ``queries``: the ledger's filters, sort, paging and capped counts;
* ``work``: each role's 我的工作 lists;
* ``search``: the full-text search (bigrams in FTS5);
* ``similar``: problems that may be the same one (疑似重复);
* ``metrics``: every metric formula, in one place (``docs/metrics.md``);
* ``assessment``: 考核, units ranked by a composite score of weighted rates;
* ``reports``: reports handed up (周报/月报/季报), frozen as issued, compared with today;
* ``export``: the ledger as CSV or XLSX, in the columns offices keep;
* ``xlsx``: the export's workbook, written as it streams (and a report's, whole);
* ``charts``: the statistics page's server-rendered SVG charts.
"""
