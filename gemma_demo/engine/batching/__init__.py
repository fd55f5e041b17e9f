"""Run the requests that arrive together as one batched `generate`, each row streaming to its reader.

Separate `generate` threads for concurrent users fight for the GIL and the cores: on a
2-core CPU four of them made fewer tokens per second in total than one (benchmarks P5).
One `generate` over a batch makes each decoding step serve every row for little more
than the cost of one, on a CPU and even more on a GPU, where a step costs one read of
the weights whatever the batch size.

The policy, in order:
- An idle model starts a request at once. Requests still building their inputs at that
  moment (users who pressed Run together) are waited for, at most `GATHER_S`.
- Each request's media go through the towers alone, once, before its batch prefills
  (`engine.towers`); compatible requests that arrive meanwhile join the batch before
  its prefill, so they share it instead of waiting for the first answer to end.
- A request that arrives while a batch runs joins the next batch, with every other
  request waiting by then.
- A running batch takes in compatible requests that arrive after it started when that
  pays: it stops, its rows' tokens so far become part of their prompts, and it starts
  again with the newcomers. It pays when prefilling the text again (media are never
  encoded twice) costs less than the newcomers would wait for the batch to end (so on a
  GPU nearly always, on a CPU early in an answer); a row is carried over at most
  `MAX_CARRY_OVERS` times.
- Nobody waits behind a long answer: a request that cannot join the running batch and
  is still waiting after `QUEUE_PATIENCE_S` starts a batch of its own beside it, but
  never while a batch encodes or prefills: two prefills at once share the same cores,
  and both people wait longer than if they had taken turns.
- Only requests with the same sampling settings and media tensors of the same shape
  share a batch (their tensors are concatenated, prompts left-padded); each row stops
  at its own `max_new_tokens`, end of turn or Stop, and the others go on. Stop is
  checked before every layer (`watch`), so it also ends a long prefill.
- Chat turns (`engine.prefix_cache`) wait and are hurried like any request and batch
  with each other: each row is prefilled alone from its conversation's kept cache, and
  the rows' caches are merged (`caches`) to decode together. Such a batch takes in turns
  that arrive before it decodes, but never restarts later: its merged cache would have
  to be taken apart.

Modules: `tensors` merges processor outputs into one batch, `caches` their key/value
caches; `requests` holds a request's and a batch's state; `scheduler` decides what runs
together; `generate` is the one `generate` call, streaming each row to its reader;
`watch` knows which batch a thread works for and stops it between layers. Part of
`engine`: imports no layer above.
"""
