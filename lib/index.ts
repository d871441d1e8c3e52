export { attention, buildBlockLayout } from './attention';
export { BlockLayout, BLOCK_FULL, BLOCK_SELECTED } from './layout';
export type { LayoutGeometry, LayoutEntryList } from './layout';
export { Tensor } from './tensor';
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
