/**
 * The associative-recall task: a context of `seq - queries` positions holds `pairs` key-value
 * pairs at random positions (each such position embeds its key and its value), filler tokens
 * everywhere else, and `queries` query positions end the sequence, each holding a key seen
 * earlier and a query marker; the model must output that key's value. The answer is anywhere in
 * the context, so a sliding window alone cannot find it: block selection must.
 */
export interface Task {
  seq: number;
  pairs: number;
  queries: number;
  keys: number;
  values: number;
  fillers: number;
  /** The order of the queries: random, or that of the pairs they ask for in the context. */
  queryOrder: 'random' | 'context';
}

/** Embedding rows: keys, then values, then fillers, then the query marker. */
export function vocabulary(t: Task): number {
  return t.keys + t.values + t.fillers + 1;
}

/** Sequences of one step: the embedding rows summed at each position and what the queries ask. */
export interface Batch {
  sequences: number;
  /** Per sequence and position, the two embedding rows summed there (-1: none). */
  first: Int32Array;
  second: Int32Array;
  /** Per sequence and query, the rows at the query's position (the key and the marker). */
  queryFirst: Int32Array;
  querySecond: Int32Array;
  /** Per sequence and query, the value id to recall. */
  target: Int32Array;
  /** Per sequence and query, the context position of the pair it asks for. */
  answerAt: Int32Array;
}

export function makeBatch(t: Task, sequences: number, rand: () => number): Batch {
  const { seq, pairs, queries, keys, values, fillers } = t;
  const first = new Int32Array(sequences * seq);
  const second = new Int32Array(sequences * seq).fill(-1);
  const target = new Int32Array(sequences * queries);
  const answerAt = new Int32Array(sequences * queries);
  const context = seq - queries;
  const marker = keys + values + fillers;
  for (let b = 0; b < sequences; b++) {
    for (let i = 0; i < context; i++) first[b * seq + i] = keys + values + Math.floor(rand() * fillers);
    // Distinct keys at distinct positions, each with a random value.
    const keyIds = shuffled(keys, rand).slice(0, pairs);
    const positions = shuffled(context, rand).slice(0, pairs);
    const valueOf = new Int32Array(pairs);
    for (let p = 0; p < pairs; p++) {
      valueOf[p] = Math.floor(rand() * values);
      first[b * seq + positions[p]] = keyIds[p];
      second[b * seq + positions[p]] = keys + valueOf[p];
    }
    // In context order, the queries of one query block ask for nearby pairs.
    const asked = Array.from({ length: queries }, () => Math.floor(rand() * pairs));
    if (t.queryOrder === 'context') asked.sort((x, y) => positions[x] - positions[y]);
    for (let q = 0; q < queries; q++) {
      const x = b * seq + context + q;
      first[x] = keyIds[asked[q]];
      second[x] = marker;
      target[b * queries + q] = valueOf[asked[q]];
      answerAt[b * queries + q] = positions[asked[q]];
    }
  }
  const queryFirst = new Int32Array(sequences * queries);
  const querySecond = new Int32Array(sequences * queries);
  for (let b = 0; b < sequences; b++) {
    queryFirst.set(first.subarray((b + 1) * seq - queries, (b + 1) * seq), b * queries);
    querySecond.set(second.subarray((b + 1) * seq - queries, (b + 1) * seq), b * queries);
  }
  return { sequences, first, second, queryFirst, querySecond, target, answerAt };
}

function shuffled(n: number, rand: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
