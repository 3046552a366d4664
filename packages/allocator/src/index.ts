export { BitmapAllocator, type Extent, MAX_RESERVED_RANGES, MAX_BLOCK_COUNT } from './bitmap-allocator.js';
