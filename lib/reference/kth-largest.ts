/**
 * The k-th largest of values[0..n) (1-based k, 1 <= k <= n), reordering values in place.
 * Hoare-partition quickselect with a median-of-three pivot: linear on average, and
 * duplicates (tied scores) split evenly instead of degrading to quadratic time.
 */
export function kthLargest(values: Float64Array, n: number, k: number): number {
  // The k-th largest is the element of ascending rank n - k.
  const target = n - k;
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    const a = values[lo], b = values[mid], c = values[hi];
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return values[target];
  }
  return values[target];
}

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);

/**
 * The largest float32 at or below x. Thresholds are returned as float32; rounding them down
 * (never up) keeps the k-th largest score itself, and the forward and backward passes compare
 * scores against exactly the value the caller sees.
 */
export function floorToFloat32(x: number): number {
  f32[0] = x;
  if (f32[0] <= x || Number.isNaN(x)) return f32[0];
  // f32[0] is the float32 just above x: step one unit in the last place towards -inf.
  if (f32[0] === 0) return -(2 ** -149);
  i32[0] += f32[0] > 0 ? -1 : 1;
  return f32[0];
}
