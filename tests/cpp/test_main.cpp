#include <cstdio>
#include <exception>

#include "check.hpp"

int main() {
    int passed = 0, failed = 0;
    for (const auto& c : check::registry()) {
        try {
            c.body();
            ++passed;
            std::printf("PASS %s\n", c.name.c_str());
        } catch (const std::exception& e) {
            ++failed;
            std::printf("FAIL %s: %s\n", c.name.c_str(), e.what());
        }
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
