// An allocator for the engine's large buffers that are read out of order: the float32 rows the
// bf16 re-rank gathers (about 50 random rows per row) and the lists' near misses. With 4 KB pages
// nearly every gathered row costs a TLB miss, a page walk that a virtual machine pays twice over;
// 2 MB pages cover a million-row matrix with a few hundred TLB entries. Linux's default
// transparent-huge-page mode on many distributions ("madvise") gives them only to memory that
// asks for them, which this allocator does for buffers of 4 MB and more, unless the environment
// sets DUPSCOPE_HUGE_PAGES=0 (with the "madvise" defrag setting a fault in such a buffer may make
// the kernel compact memory first). Elsewhere, or when the kernel declines, it is an ordinary
// aligned allocation.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dupscope {

// Whether large buffers ask for huge pages: not when DUPSCOPE_HUGE_PAGES is "0" (read once).
inline bool huge_pages_wanted() {
  static const bool wanted = [] {
    const char* env = std::getenv("DUPSCOPE_HUGE_PAGES");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return wanted;
}

template <class T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kPage = size_t{2} << 20;
  static constexpr size_t kLarge = size_t{4} << 20;

  HugePageAllocator() noexcept = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (bytes < kLarge) return static_cast<T*>(::operator new(bytes));
    const size_t rounded = (bytes + kPage - 1) / kPage * kPage;
    void* p = std::aligned_alloc(kPage, rounded);
    if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (huge_pages_wanted()) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: a refusal leaves ordinary pages
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) < kLarge) ::operator delete(p);
    else std::free(p);
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const HugePageAllocator<U>&) const noexcept { return false; }
};

template <class T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace dupscope
