// Data helpers of the C++ examples (not part of the API): bf16 <-> float with round to nearest even, and the C
// example's xorshift generator, so that every example can draw the same inputs from the same seed.
#pragma once

#include <cstdint>
#include <cstring>

namespace example {

inline uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

inline float from_bf16(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// xorshift64, uniform in [-1, 1) from the top 24 bits.
struct Xorshift {
    uint64_t state;
    float next() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return static_cast<float>((state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
};

}  // namespace example
