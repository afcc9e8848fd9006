using System.Diagnostics;

namespace Cfn.Testing;

/// <summary>
/// The one way a test waits for something to happen: it polls a condition and returns as soon as it holds, so a test
/// waits exactly as long as the system needs, and when the time is up it fails saying what never happened. Compiled
/// into both test projects (each links this file). A fixed sleep stays only where a test shows that something does NOT
/// happen, and then its length comes from the mechanism's own interval. Where the clock is the process's own (a loop's
/// interval, a timeout judged by <c>TimeProvider</c>) a test moves a FakeTimeProvider instead; where it is Redis's (TTLs,
/// staleness judged by TIME in a script) a test polls the Redis clock until the moment it needs has passed.
/// </summary>
internal static class Eventually
{
    /// <summary>How long a condition may take when the caller gives no timeout: generous, since passing costs nothing.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(15);

    /// <summary>Polls <paramref name="condition"/> until true or the timeout; returns its last value.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan? timeout = null, int pollMs = 20)
    {
        var clock = Stopwatch.StartNew();
        var limit = timeout ?? DefaultTimeout;
        while (true)
        {
            if (await condition())
            {
                return true;
            }

            if (clock.Elapsed >= limit)
            {
                return false;
            }

            await Task.Delay(pollMs);
        }
    }

    /// <summary>Polls <paramref name="condition"/> until true; fails the test with <paramref name="neverHappened"/> when the timeout passes first.</summary>
    public static async Task EventuallyAsync(Func<Task<bool>> condition, string neverHappened, TimeSpan? timeout = null, int pollMs = 20)
    {
        var limit = timeout ?? DefaultTimeout;
        if (!await EventuallyAsync(condition, limit, pollMs))
        {
            Assert.Fail($"{neverHappened} (waited {limit.TotalSeconds:0.#} s)");
        }
    }

    /// <summary>Polls a synchronous <paramref name="condition"/> (a counter, a flag, captured logs) until true; fails with <paramref name="neverHappened"/>.</summary>
    public static Task EventuallyAsync(Func<bool> condition, string neverHappened, TimeSpan? timeout = null, int pollMs = 20) =>
        EventuallyAsync(() => Task.FromResult(condition()), neverHappened, timeout, pollMs);

    /// <summary>
    /// Reads a value until <paramref name="done"/> accepts it and returns that value; fails with
    /// <paramref name="neverHappened"/> and the last value read (through <paramref name="describe"/> when given) when the
    /// timeout passes first.
    /// </summary>
    public static async Task<T> EventuallyAsync<T>(Func<Task<T>> read, Func<T, bool> done, string neverHappened, TimeSpan? timeout = null,
        int pollMs = 20, Func<T, string>? describe = null)
    {
        var last = default(T);
        var limit = timeout ?? DefaultTimeout;
        if (await EventuallyAsync(async () => done(last = await read()), limit, pollMs))
        {
            return last!;
        }

        Assert.Fail($"{neverHappened} (waited {limit.TotalSeconds:0.#} s; last value: {(describe is null || last is null ? last : describe(last))})");
        return last!;
    }
}
