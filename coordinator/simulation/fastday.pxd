# Augments fastday.py for Cython (the .py stays the single source): C types for the loop,
# and the compiled dispatch core's class, so every core call is a C call.

cimport cython

from coordinator.dispatch_core cimport DispatchCore

cdef int _FREE
cdef int _NOSHOW


@cython.locals(i=Py_ssize_t, parent=Py_ssize_t)
cdef inline Py_ssize_t _push(double[::1] ht, int[::1] hk, int[::1] hp, Py_ssize_t size,
                             double t, int key, int p) noexcept nogil

cdef inline Py_ssize_t _pop(double[::1] ht, int[::1] hk, int[::1] hp,
                            Py_ssize_t size) noexcept nogil

@cython.locals(i=Py_ssize_t, c=Py_ssize_t)
cdef inline void _sift(double[::1] ht, int[::1] hk, int[::1] hp, Py_ssize_t size, double t,
                       int key, int p) noexcept nogil

cdef inline int _key(int kind, int number) noexcept nogil


@cython.locals(m=int, p=int, k=int, s=int, j=int)
cdef void _rebuild(int n_win, int n_svc, signed char[::1] wsk, signed char[::1] incur,
                   int[::1] rank, int[::1] by_rank, int[::1] serve_off,
                   int[::1] serve_pos) noexcept nogil


@cython.locals(n=Py_ssize_t, n_win=Py_ssize_t, n_samples=Py_ssize_t, n_bins=Py_ssize_t,
               n_svc=Py_ssize_t, n_ch=Py_ssize_t, p=int, q=int, s=int, k=Py_ssize_t, c=int,
               r=int, size=Py_ssize_t, start=double, next_rank=int, i=Py_ssize_t,
               j=Py_ssize_t, nt=Py_ssize_t, nc=Py_ssize_t, nb=Py_ssize_t, waiting="long long",
               ns=Py_ssize_t, next_sample=double, last_end=double, wake=int, back=bint,
               now=double, rel=double, kind=int, a=Py_ssize_t, is_open=bint,
               issued="long long", t=Py_ssize_t, then=Py_ssize_t, opened=bint, d=double,
               wait=double, b=Py_ssize_t, root=bint, gone=bint, key=int)
cpdef double play(DispatchCore core, double[::1] at, int[::1] asvc, double[::1] aserv,
                  signed char[::1] anoshow, int[::1] ax, double[::1] axs, double[::1] asa,
                  double[::1] asb, Py_ssize_t n_back, int[::1] svc_of_code, int[::1] cls_of,
                  int green_cls, int appt_cls, long long[::1] cap, long long[::1] ceiling,
                  double[::1] hours, int[::1] hours_off, int[::1] win_idx, int[::1] win_num,
                  signed char[::1] wsk, signed char[::1] incur, int[::1] rank,
                  double[::1] free_at, double[::1] ch_t, int[::1] ch_p,
                  signed char[::1] ch_sk, list ch_svcs, list ch_wts, double base, double t0,
                  double no_show_wait, double sample_from, double sample_s, double bin_s,
                  int[::1] tsvc, double[::1] tissue, int[::1] tarr, int[::1] tcls,
                  double[::1] tsa, double[::1] tsb, double[::1] tback, double[::1] tcall,
                  double[::1] cwait,
                  int[::1] csvc, double[::1] cbook, double[::1] busy, long long[::1] samples,
                  double[::1] bins, long long[::1] bin_n, long long[::1] counts,
                  double[::1] work, long long[::1] flags, int[::1] wcur, signed char[::1] occ,
                  int[::1] by_rank, int[::1] serve_off, int[::1] serve_pos, double[::1] ht,
                  int[::1] hk, int[::1] hp) except? -1.0


@cython.locals(i=Py_ssize_t, k=Py_ssize_t)
cpdef void split(double[::1] values, int[::1] keys, Py_ssize_t n, Py_ssize_t n_keys,
                 double[::1] out, long long[::1] offsets) noexcept
