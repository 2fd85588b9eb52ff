#pragma once

// Random edits of an encoding, for tests that compare a hand-written decoder with protobuf
// on records that are almost right.

#include <random>
#include <string>

namespace tidemark::testing {

/// 1 to 4 edits of `wire`: a byte replaced, a bit flipped, a byte inserted, bytes erased.
inline std::string RandomEdits(std::string wire, std::mt19937_64& random) {
  const int edits = 1 + static_cast<int>(random() % 4);
  for (int k = 0; k < edits && !wire.empty(); ++k) {
    const size_t at = random() % wire.size();
    switch (random() % 4) {
      case 0:
        wire[at] = static_cast<char>(random());
        break;
      case 1:
        wire[at] ^= static_cast<char>(1 << (random() % 8));
        break;
      case 2:
        wire.insert(at, 1, static_cast<char>(random()));
        break;
      case 3:
        wire.erase(at, 1 + random() % 4);
        break;
    }
  }
  return wire;
}

}  // namespace tidemark::testing
