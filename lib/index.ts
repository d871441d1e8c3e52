export { attention, buildBlockLayout } from './attention';
export { BlockLayout, BLOCK_FULL, BLOCK_SELECTED } from './layout';
export type { LayoutGeometry, LayoutEntryList } from './layout';
export { Tensor } from './tensor';
export { KvCache, DEFAULT_PAGE_SIZE } from './kv-cache';
export type { KvCacheOptions, AppendOptions } from './kv-cache';
export { decode } from './decode';
export type { DecodeOptions, DecodeResult, DecodeStats } from './decode';
export { mergeAttention } from './merge';
export { attentionBackward } from './backward';
export type { BackwardOptions, BackwardResult } from './backward';
export type { AttentionPart, DeviceAttentionPart, MergeOptions } from './merge';
export type { TensorLocation, TensorType } from './tensor';
export { info } from './info';
export type { Info } from './info';
export { progressiveSchedule } from './schedule';
export type { ScheduleConfig, ScheduleCurve } from './schedule';
export { POLY_EXP2 } from './softmax';
export {
  PsaError, ShapeError, DtypeError, OptionError, ValueError, BackendUnavailableError, DisposedError, OutOfMemoryError, CudaError,
} from './errors';
export type { PsaErrorCode } from './errors';
export type * from './types';
