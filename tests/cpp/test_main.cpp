#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>

#include "check.hpp"

// Runs every registered test, those whose name contains argv[1], or (argv[1] = -TEXT) those
// whose name does not contain TEXT; prints each with its time.
int main(int argc, char** argv) {
    const char* filter = argc > 1 ? argv[1] : nullptr;
    const bool exclude = filter && filter[0] == '-';
    if (exclude) ++filter;
    int passed = 0, failed = 0;
    for (const auto& c : check::registry()) {
        if (filter && (std::strstr(c.name.c_str(), filter) != nullptr) == exclude) continue;
        const auto t0 = std::chrono::steady_clock::now();
        try {
            c.body();
            ++passed;
            std::printf("PASS %s", c.name.c_str());
        } catch (const std::exception& e) {
            ++failed;
            std::printf("FAIL %s: %s", c.name.c_str(), e.what());
        }
        std::printf(" (%.2f s)\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        std::fflush(stdout);
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
