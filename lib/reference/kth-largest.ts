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
