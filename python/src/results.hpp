#pragma once
// Result structs of the core bound as read-only Python classes, as boost-histogram binds its
// accumulators: one attribute per field, std::vector fields as numpy arrays that view the
// struct's memory (no copy; each array keeps its result object alive), a __repr__ with the
// scalars and the shapes of the arrays, and to_dict() for records (JSON of a benchmark).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace fastnplm_bindings {

namespace py = pybind11;

template <class T>
class ResultClass {
public:
    /// Registers class `name` (Python) for the C++ struct T in module m.
    ResultClass(py::module_& m, const char* name, const char* doc)
        : cls_(m, name, doc), names_(std::make_shared<std::vector<std::string>>()) {
        const auto names = names_;
        cls_.def(
            "__repr__",
            [names](const py::object& self) {
                std::string s = py::str(py::type::handle_of(self).attr("__name__"));
                s += "(";
                for (std::size_t i = 0; i < names->size(); ++i) {
                    const py::object v = self.attr((*names)[i].c_str());
                    s += (i ? ", " : "") + (*names)[i] + "=";
                    if (py::isinstance<py::array>(v)) {
                        const auto a = py::reinterpret_borrow<py::array>(v);
                        s += "array(shape=" + std::string(py::str(v.attr("shape"))) +
                             ", dtype=" + std::string(py::str(a.dtype())) + ")";
                    } else {
                        s += std::string(py::repr(v));
                    }
                }
                return s + ")";
            },
            "The scalars, and the shapes of the arrays.");
        cls_.def(
            "to_dict",
            [names](const py::object& self) {
                py::dict d;
                for (const std::string& n : *names) d[n.c_str()] = self.attr(n.c_str());
                return d;
            },
            "The attributes as a dict (the arrays are the same views).");
    }

    /// A field read as it is (a number, a string; a std::vector<int> becomes a list).
    template <class M>
    ResultClass& field(const char* name, M T::* member, const char* doc) {
        cls_.def_readonly(name, member, doc);
        names_->push_back(name);
        return *this;
    }

    /// A std::vector<E> field read as a numpy array of shape shape_of(object) over its memory;
    /// dtype: numpy's dtype of E unless given (bool for 0/1 bytes).
    template <class E, class Shape>
    ResultClass& array(const char* name, std::vector<E> T::* member, Shape shape_of, const char* doc,
                       const char* dtype = nullptr) {
        const std::string dt = dtype ? dtype : "";
        cls_.def_property_readonly(
            name,
            [member, shape_of, dt](const py::object& self) {
                const T& r = self.cast<const T&>();
                const std::vector<E>& v = r.*member;
                const py::dtype d = dt.empty() ? py::dtype::of<E>() : py::dtype(dt);
                const std::vector<py::ssize_t> shape = shape_of(r);
                if (v.empty()) return py::array(d, shape);  // nothing to view (data() may be null)
                return py::array(d, shape, std::vector<py::ssize_t>{}, v.data(), self);
            },
            doc);
        names_->push_back(name);
        return *this;
    }

    /// An attribute computed from the struct by get(const T&).
    template <class F>
    ResultClass& property(const char* name, F get, const char* doc) {
        cls_.def_property_readonly(name, get, doc);
        names_->push_back(name);
        return *this;
    }

private:
    py::class_<T> cls_;
    std::shared_ptr<std::vector<std::string>> names_;
};

/// The shape (n) of a vector field.
template <class T, class E>
auto flat(std::vector<E> T::* member) {
    return [member](const T& r) { return std::vector<py::ssize_t>{static_cast<py::ssize_t>((r.*member).size())}; };
}

}  // namespace fastnplm_bindings
