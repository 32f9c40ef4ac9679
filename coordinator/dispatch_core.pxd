# Augments dispatch_core.py for Cython: the .py stays the single source, this file only
# gives it C types. Keep the two in step: every attribute and method of DispatchCore is
# declared here, or the compiled class rejects it.

cimport cython

cdef int _APPOINTMENT
cdef int _NORMAL
cdef int _N_CLASSES
cdef Py_ssize_t _MAX_TICKETS


cdef class DispatchCore:
    cdef readonly int n_services
    cdef readonly int n_windows
    cdef readonly Py_ssize_t capacity
    cdef readonly double boost
    cdef int n_fifo

    cdef int[::1] qhead
    cdef int[::1] qtail
    cdef double[::1] head_issue
    cdef long long[::1] head_seq
    cdef double[::1] head_start
    cdef double[::1] head_end
    cdef int[::1] svc_waiting
    cdef double[::1] target
    cdef int[::1] sk_svc
    cdef double[::1] sk_weight
    cdef int[::1] sk_n
    cdef int[::1] walk

    cdef int[::1] nxt
    cdef int[::1] prv
    cdef int[::1] tqueue
    cdef int[::1] tsvc
    cdef double[::1] issue
    cdef double[::1] astart
    cdef double[::1] aend
    cdef long long[::1] tseq

    cpdef dict export_state(self)
    cpdef void import_state(self, dict state) except *

    cpdef void set_service(self, int s, double target_s) except *
    cpdef void set_boost(self, double factor) except *

    @cython.locals(n=Py_ssize_t, i=Py_ssize_t, s=int, weight=double)
    cpdef void set_skills(self, int w, services, weights) except *

    @cython.locals(q=int, s=int, t=Py_ssize_t)
    cpdef void clear(self) noexcept

    cpdef void add(self, Py_ssize_t t, int s, int cls, double issue_time, long long seq,
                   double appt_start=*, double appt_end=*) except *

    @cython.locals(q=int)
    cpdef void add_behind_head(self, Py_ssize_t t, int s, int cls, double issue_time,
                               long long seq) except *

    cpdef void add_directed(self, Py_ssize_t t, int w, int s, int cls, double issue_time,
                            long long seq) except *

    cpdef bint remove(self, Py_ssize_t t) except -1

    @cython.locals(t=Py_ssize_t)
    cpdef Py_ssize_t call_next(self, int w, double now) except -2

    cpdef Py_ssize_t peek_next(self, int w, double now) except -2

    cpdef bint queued(self, Py_ssize_t t) noexcept
    cpdef Py_ssize_t waiting(self, int s) except -1

    @cython.locals(q=int, ahead=Py_ssize_t, a=int, best=int)
    cpdef Py_ssize_t position(self, Py_ssize_t t, double now) except -2

    @cython.locals(out=list, best=int)
    cpdef list upcoming(self, int s, double now, Py_ssize_t limit)

    @cython.locals(base=int, c=int)
    cdef inline void _walk_from(self, int s) noexcept

    @cython.locals(walk="int[::1]", target=double, boost=double, best=int, best_c=int,
                   best_cls=int, best_urg=double, best_seq="long long", c=int, h=int, eff=int,
                   wait=double, urg=double)
    cdef inline int _walk_step(self, int s, double now) noexcept

    @cython.locals(directed=int, boost=double, best=int, best_cls=int, best_urg=double,
                   best_seq="long long", base=Py_ssize_t, i=Py_ssize_t, s=int, weight=double,
                   limit=double, q=int, c=int, h=int, eff=int, wait=double, urg=double)
    cdef inline int _pick(self, int w, double now) noexcept

    cdef inline void _check_window(self, int w) except *
    cdef inline void _check_service(self, int s) except *
    cdef inline void _prepare(self, Py_ssize_t t, int s, int cls) except *
    cdef inline void _store(self, Py_ssize_t t, int s, double issue_time,
                            long long seq) noexcept

    @cython.locals(old=Py_ssize_t, cap=Py_ssize_t)
    cdef void _grow(self, Py_ssize_t need) except *

    @cython.locals(dst="int[::1]")
    cdef object _more_ints(self, int[::1] src, Py_ssize_t old, Py_ssize_t cap, int fill)

    @cython.locals(dst="double[::1]")
    cdef object _more_doubles(self, double[::1] src, Py_ssize_t old, Py_ssize_t cap)

    @cython.locals(dst="long long[::1]")
    cdef object _more_seqs(self, long long[::1] src, Py_ssize_t old, Py_ssize_t cap)

    @cython.locals(seq="long long", a=int, start=double, issued=double)
    cdef inline void _insert_ordered(self, Py_ssize_t t, int q, bint by_slot) noexcept

    @cython.locals(n=int)
    cdef inline void _link_after(self, Py_ssize_t t, int q, int a) noexcept

    cdef inline void _set_head(self, int q, Py_ssize_t t) noexcept

    @cython.locals(q=int, p=int, n=int)
    cdef inline void _unlink(self, Py_ssize_t t) noexcept
