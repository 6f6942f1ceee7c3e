/*
 * ulma.hpp -- ulma's native scopes for C++ (C++11 or later): ulma.h, whose
 * ULMA_SCOPE is already an RAII object in C++, and named sites for scopes
 * whose extent is not a block.
 *
 *     ULMA_SITE(load_site, "load");            // at namespace or function scope
 *     {
 *         ulma::Scope s(load_site);            // ends with the object
 *         ...
 *     }
 *     ulma::mark(tick_site);  ulma::counter(depth_site, n);
 *
 * With -DULMA_DISABLE everything compiles to nothing.
 */
#ifndef ULMA_HPP_INCLUDED
#define ULMA_HPP_INCLUDED

#include "ulma.h"

#define ULMA_SITE(var, name) static ulma_site var = ULMA_SITE_INIT(name, ULMA_SITE_SCOPE)
#define ULMA_MARK_SITE(var, name) static ulma_site var = ULMA_SITE_INIT(name, ULMA_SITE_MARK)
#define ULMA_COUNTER_SITE(var, name) static ulma_site var = ULMA_SITE_INIT(name, ULMA_SITE_COUNTER)

namespace ulma {

class Scope {
  public:
    explicit Scope(ulma_site &site) : scope_(ulma_scope_begin(&site)) {}
    ~Scope() { ulma_scope_end(scope_); }
    Scope(const Scope &) = delete;
    Scope &operator=(const Scope &) = delete;

  private:
    ulma_scope scope_;
};

inline void mark(ulma_site &site) { ulma_mark(&site); }
inline void counter(ulma_site &site, int64_t value) { ulma_counter(&site, value); }

} // namespace ulma

#endif /* ULMA_HPP_INCLUDED */
