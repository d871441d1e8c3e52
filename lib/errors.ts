/**
 * Coded errors. Every error the library raises is a `PsaError` with a stable `code`; the
 * message names the argument and what was expected. Native code creates these same classes
 * (it is handed the constructors), so `instanceof` and `code` work across the boundary.
 */
export type PsaErrorCode =
  | 'ERR_SHAPE'
  | 'ERR_DTYPE'
  | 'ERR_OPTION'
  | 'ERR_VALUE'
  | 'ERR_BACKEND_UNAVAILABLE'
  | 'ERR_DISPOSED'
  | 'ERR_OUT_OF_MEMORY'
  | 'ERR_CUDA'
  | 'ERR_INTERNAL';

export class PsaError extends Error {
  readonly code: PsaErrorCode;
  /** The argument or option at fault (`'q'`, `'shape.headDim'`, `'blocks.ratio'`), when there is one. */
  readonly argument: string | undefined;

  constructor(code: PsaErrorCode, message: string, argument?: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.argument = argument;
  }
}

/** A tensor shape or buffer length does not match what the call needs. */
export class ShapeError extends PsaError {
  constructor(message: string, argument?: string) {
    super('ERR_SHAPE', message, argument);
  }
}

/** A buffer has the wrong element type, or a dtype is not supported where it was asked for. */
export class DtypeError extends PsaError {
  constructor(message: string, argument?: string) {
    super('ERR_DTYPE', message, argument);
  }
}

/** An option is missing, malformed, out of range, or contradicts another option. */
export class OptionError extends PsaError {
  constructor(message: string, argument?: string) {
    super('ERR_OPTION', message, argument);
  }
}

/** Input data holds a value the computation cannot take (NaN or an infinity). */
export class ValueError extends PsaError {
  constructor(message: string, argument?: string) {
    super('ERR_VALUE', message, argument);
  }
}

/** The requested backend is not usable here; `reason` says why. */
export class BackendUnavailableError extends PsaError {
  readonly backend: string;
  readonly reason: string;
  constructor(backend: string, reason: string) {
    super('ERR_BACKEND_UNAVAILABLE', `backend '${backend}' is unavailable: ${reason}`, 'backend');
    this.backend = backend;
    this.reason = reason;
  }
}

/** A handle (Tensor, layout on a device) was used after `dispose()`. */
export class DisposedError extends PsaError {
  constructor(what: string, argument?: string) {
    super('ERR_DISPOSED', `${what} was used after dispose()`, argument);
  }
}

/** An allocation failed or would exceed what the backend can address. */
export class OutOfMemoryError extends PsaError {
  constructor(message: string, argument?: string) {
    super('ERR_OUT_OF_MEMORY', message, argument);
  }
}

/** A CUDA runtime call failed; `cudaError` is the runtime's name for it (`cudaErrorInsufficientDriver`). */
export class CudaError extends PsaError {
  readonly cudaError: string;
  constructor(cudaError: string, message: string) {
    super('ERR_CUDA', `${message} (${cudaError})`);
    this.cudaError = cudaError;
  }
}
