#pragma once
// A minimal test registry: TEST(name) { CHECK(cond); CHECK_CLOSE(a, b, rtol, atol); }.
#include <cmath>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace check {

struct Case {
    std::string name;
    std::function<void()> body;
};

inline std::vector<Case>& registry() {
    static std::vector<Case> cases;
    return cases;
}

struct Register {
    Register(const char* name, std::function<void()> body) { registry().push_back({name, std::move(body)}); }
};

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline void fail(const char* file, int line, const std::string& what) {
    std::ostringstream s;
    s << file << ":" << line << ": " << what;
    throw Failure(s.str());
}

}  // namespace check

#define TEST(name)                                              \
    static void test_##name();                                  \
    static check::Register register_##name(#name, test_##name); \
    static void test_##name()

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) check::fail(__FILE__, __LINE__, "CHECK(" #cond ") failed"); \
    } while (0)

#define CHECK_CLOSE(a, b, rtol, atol)                                   \
    do {                                                                \
        const double a_ = (a), b_ = (b);                                \
        if (!(std::fabs(a_ - b_) <= (atol) + (rtol) * std::fabs(b_))) { \
            std::ostringstream s_;                                      \
            s_.precision(17);                                           \
            s_ << #a " = " << a_ << " vs " #b " = " << b_;              \
            check::fail(__FILE__, __LINE__, s_.str());                  \
        }                                                               \
    } while (0)

#define CHECK_THROWS(expr, type)                                                      \
    do {                                                                              \
        bool thrown_ = false;                                                         \
        try {                                                                         \
            expr;                                                                     \
        } catch (const type&) {                                                       \
            thrown_ = true;                                                           \
        }                                                                             \
        if (!thrown_) check::fail(__FILE__, __LINE__, #expr " did not throw " #type); \
    } while (0)
