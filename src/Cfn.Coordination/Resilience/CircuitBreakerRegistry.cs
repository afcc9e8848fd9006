using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;

namespace Cfn.Coordination.Resilience;

/// <summary>
/// The process's circuit breakers, one per name (SPEC §2.14 <c>CFNCircuitBreakerManager</c>), exported as the gauge
/// <c>circuit_breaker_state{name, state}</c>: for every breaker, 1 on the series of its current state and 0 on the
/// other two (<c>closed</c>, <c>open</c>, <c>half_open</c>). States are refreshed before every scrape, so an open
/// circuit whose delay has passed is exported as half-open. Well-known names: <see cref="RedisName"/> and
/// <see cref="ExternalName(Uri)"/>.
/// </summary>
public sealed class CircuitBreakerRegistry
{
    /// <summary>Name of the breaker around Redis calls.</summary>
    public const string RedisName = "redis";

    /// <summary>Name of the gauge.</summary>
    public const string GaugeName = "circuit_breaker_state";

    private readonly ConcurrentDictionary<string, CircuitBreaker> _breakers = new(StringComparer.Ordinal);
    private readonly CircuitBreakerOptions _defaults;
    private readonly ILoggerFactory _loggerFactory;

    /// <summary>Creates an empty registry whose gauge lives in <paramref name="registry"/>.</summary>
    /// <param name="registry">Prometheus registry of the gauge (<see cref="Prometheus.Metrics.DefaultRegistry"/> in the process).</param>
    /// <param name="defaultOptions">Options of breakers created without their own (copied and validated); the defaults when null.</param>
    /// <param name="timeProvider">Clock of every breaker; the system clock when null.</param>
    /// <param name="loggerFactory">Source of the breakers' loggers; none when null.</param>
    public CircuitBreakerRegistry(
        CollectorRegistry registry,
        CircuitBreakerOptions? defaultOptions = null,
        TimeProvider? timeProvider = null,
        ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(registry);
        _defaults = (defaultOptions ?? new CircuitBreakerOptions()).Clone();
        _defaults.Validate();
        TimeProvider = timeProvider ?? TimeProvider.System;
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        Registry = registry;
        StateGauge = Prometheus.Metrics.WithCustomRegistry(registry).CreateGauge(GaugeName,
            "Circuit breaker state: 1 for the current state (closed, open, half_open) of each named breaker, 0 for the others.",
            "name", "state");
        registry.AddBeforeCollectCallback(Refresh);
    }

    /// <summary>The Prometheus registry of the gauge.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary><c>circuit_breaker_state{name, state}</c>.</summary>
    public Gauge StateGauge { get; }

    /// <summary>The clock of every breaker created here.</summary>
    public TimeProvider TimeProvider { get; }

    /// <summary>A copy of the options used for breakers created without their own.</summary>
    public CircuitBreakerOptions DefaultOptions => _defaults.Clone();

    /// <summary>Every breaker created so far, ordered by name.</summary>
    public IReadOnlyCollection<CircuitBreaker> All => [.. _breakers.Values.OrderBy(b => b.Name, StringComparer.Ordinal)];

    /// <summary>The <see cref="RedisName"/> breaker (created with the default options on first use).</summary>
    public CircuitBreaker Redis => GetOrCreate(RedisName);

    /// <summary>
    /// Name of the breaker for outbound calls to <paramref name="host"/>: <c>external:{host}</c>, lowercased. Pass the
    /// host as in a URL's authority without user info (<c>api.example.com</c>, or <c>127.0.0.1:8080</c> for a
    /// non-default port), as <see cref="ExternalName(Uri)"/> does.
    /// </summary>
    public static string ExternalName(string host)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(host);
        return "external:" + host.ToLowerInvariant();
    }

    /// <summary>
    /// Name of the breaker for outbound calls to <paramref name="uri"/>: <c>external:{host}</c>, where host is the
    /// URL's host plus its port when that is not the scheme's default (like JavaScript's <c>URL.host</c>), so two
    /// services on one machine do not share a breaker.
    /// </summary>
    public static string ExternalName(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        if (!uri.IsAbsoluteUri)
        {
            throw new ArgumentException("the URI must be absolute", nameof(uri));
        }

        return ExternalName(uri.IsDefaultPort ? uri.Host : uri.Host + ":" + uri.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// The breaker named <paramref name="name"/>, created on first use with <paramref name="options"/> (or the registry's
    /// defaults). Options given on later calls are ignored: the first options win.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty.</exception>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The options are invalid.</exception>
    public CircuitBreaker GetOrCreate(string name, CircuitBreakerOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (_breakers.TryGetValue(name, out var existing))
        {
            return existing;
        }

        var created = new CircuitBreaker(name, options ?? _defaults, TimeProvider, _loggerFactory.CreateLogger<CircuitBreaker>());
        var breaker = _breakers.GetOrAdd(name, created);
        if (ReferenceEquals(breaker, created))
        {
            breaker.StateChanged += (_, e) => Export(e.Name, e.To);
            Export(name, breaker.State);
        }

        return breaker;
    }

    /// <summary>The breaker named <paramref name="name"/>, if one was created.</summary>
    public bool TryGet(string name, out CircuitBreaker? breaker) => _breakers.TryGetValue(name, out breaker);

    /// <summary>Resets every breaker to closed.</summary>
    public void ResetAll()
    {
        foreach (var breaker in _breakers.Values)
        {
            breaker.Reset();
        }
    }

    /// <summary>Writes the current state of every breaker into the gauge (also done before every scrape).</summary>
    public void Refresh()
    {
        foreach (var breaker in _breakers.Values)
        {
            Export(breaker.Name, breaker.State);
        }
    }

    private void Export(string name, CircuitState current)
    {
        foreach (var state in CircuitStateExtensions.All)
        {
            StateGauge.WithLabels(name, state.ToLabel()).Set(state == current ? 1 : 0);
        }
    }
}
