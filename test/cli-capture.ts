/** The CLI's `main` run in-process with stdout and stderr captured: its exit code and both texts. */
import { main } from '../lib/cli';

export async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    const code = await main(['node', 'psa', ...argv]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}
