import { describe, expect, it } from 'vitest';
import { parseSize } from '../src/command.js';
import { formatBytes, formatDuration, formatRate, formatTable } from '../src/format.js';

describe('formatting', () => {
  it('formats sizes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(224.27)).toBe('224 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(95.2 * 1024 * 1024)).toBe('95.2 MiB');
    expect(formatBytes(300 * 1024)).toBe('300 KiB');
    expect(formatBytes(3 * 2 ** 40)).toBe('3.00 TiB');
  });

  it('formats durations', () => {
    expect(formatDuration(0.5)).toBe('0.50 ms');
    expect(formatDuration(850)).toBe('850 ms');
    expect(formatDuration(1234)).toBe('1.23 s');
    expect(formatDuration(12_345)).toBe('12.3 s');
    expect(formatDuration(125_000)).toBe('2 min 5 s');
  });

  it('formats rates and tables', () => {
    expect(formatRate(1000, 500)).toBe('2,000/s');
    expect(formatTable([['a', 'bb', 'c'], ['ccc', 'd', 'e']], [1])).toBe('a    bb  c\nccc   d  e');
  });

  it('parses sizes with suffixes', () => {
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('4k')).toBe(4096);
    expect(parseSize('8KiB')).toBe(8192);
    expect(parseSize('32m')).toBe(32 << 20);
    expect(parseSize('1g')).toBe(1 << 30);
    expect(parseSize('x')).toBeUndefined();
    expect(parseSize('4q')).toBeUndefined();
    expect(parseSize('-1')).toBeUndefined();
  });
});
